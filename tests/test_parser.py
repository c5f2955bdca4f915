import os

import pytest

from eneuronet_bids import __version__
from eneuronet_bids.parser import UsageError, build_parser, parse_args, validate_paths


@pytest.fixture()
def bids(tmp_path):
    d = tmp_path / "bids"
    d.mkdir()
    (d / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    return d


def test_defaults_and_thread_options(bids, tmp_path):
    args = parse_args([str(bids), str(tmp_path / "out"), "participant", "--nprocs", "3"])
    assert args.analysis_level == "participant"
    assert args.omp_nthreads == 3 and args.device == "auto" and args.random_seed == 0
    assert args.test_time_flip
    assert not parse_args([str(bids), str(tmp_path), "participant",
                           "--no-test-time-flip"]).test_time_flip
    validate_paths(args)
    assert (tmp_path / "out").is_dir()


def test_participant_and_session_labels_several(bids, tmp_path):
    args = parse_args([str(bids), str(tmp_path / "o"), "participant",
                       "--participant-label", "sub-01", "02", "--session-label", "ses-1"])
    assert args.participant_label == ["sub-01", "02"]
    assert args.session_label == ["ses-1"]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_documents_every_option_and_states_each_default_once():
    parser = build_parser()
    for action in parser._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help"
        entry = parser._get_formatter()._get_help_string(action)
        assert entry.count("(default:") <= 1, entry
    text = " ".join(parser.format_help().split())
    assert "(default: 13 14 15 16)" in text and "(default: 0)" in text  # lists and zeros
    assert "(default: None)" not in text and "(default: False)" not in text


def test_unknown_level_exits_2(bids, tmp_path):
    with pytest.raises(SystemExit) as e:
        parse_args([str(bids), str(tmp_path), "subject"])
    assert e.value.code == 2


@pytest.mark.parametrize("out, ok", [("inside", False), ("", False),
                                     ("derivatives", False), ("derivatives/eneuronet", True)])
def test_output_inside_bids_dir(bids, out, ok):
    args = parse_args([str(bids), str(bids / out), "participant"])
    if ok:
        validate_paths(args)
    else:
        with pytest.raises(UsageError, match="output_dir"):
            validate_paths(args)


def test_missing_bids_dir_and_not_bids(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        validate_paths(parse_args([str(tmp_path / "nope"), str(tmp_path / "o"), "participant"]))
    with pytest.raises(UsageError, match="not a BIDS dataset"):
        validate_paths(parse_args([str(tmp_path), str(tmp_path / "o"), "participant"]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(bids, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(UsageError, match="output_dir"):
        validate_paths(parse_args([str(bids), str(ro / "out"), "participant"]))


def test_output_under_a_file_cannot_be_created(bids, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="output_dir .* cannot be created"):
        validate_paths(parse_args([str(bids), str(blocker / "out"), "participant"]))


def test_train_needs_labels_and_valid_patch(bids, tmp_path):
    with pytest.raises(UsageError, match="--labels"):
        validate_paths(parse_args([str(bids), str(tmp_path / "o"), "train"]))
    with pytest.raises(UsageError, match="patch-size"):
        validate_paths(parse_args([str(bids), str(tmp_path / "o"), "train",
                                   "--labels", str(tmp_path), "--patch-size", "40"]))
    for option in ("--flip-p", "--tissue-contrast-p", "--low-resolution-p", "--gamma-log-range",
                   "--dropout"):
        with pytest.raises(UsageError, match=option):
            validate_paths(parse_args([str(bids), str(tmp_path / "o"), "train",
                                       "--labels", str(tmp_path), option, "1.6"]))
    with pytest.raises(UsageError, match="--data-workers"):
        validate_paths(parse_args([str(bids), str(tmp_path / "o"), "train",
                                   "--labels", str(tmp_path), "--data-workers", "-1"]))


def test_train_options_reach_the_training_configuration(bids, tmp_path):
    from eneuronet_bids.cli import train_config

    base = [str(bids), str(tmp_path / "o"), "train", "--labels", str(tmp_path)]
    plain = train_config(parse_args(base), tmp_path / "w")
    assert not plain.match_target_intensity and plain.registration_p == pytest.approx(1 / 3)
    asked = train_config(parse_args(base + ["--match-target-intensity", "--registration-p",
                                            "0.5"]), tmp_path / "w")
    assert asked.match_target_intensity and asked.registration_p == 0.5
    assert not plain.cpu_bf16
    assert train_config(parse_args(base + ["--cpu-bf16"]), tmp_path / "w").cpu_bf16


def test_negative_random_seed_is_refused(bids, tmp_path):
    args = parse_args([str(bids), str(tmp_path / "o"), "participant", "--random-seed", "-1"])
    with pytest.raises(UsageError, match="--random-seed"):
        validate_paths(args)
