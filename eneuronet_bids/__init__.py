"""eneuronet: whole-brain DKT parcellation of T1w MRI with E-NeuroNet, as a BIDS App."""

__version__ = "0.1.0"
