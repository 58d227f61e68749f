"""Property-based tests of the command line: random argument lists never end in an unhandled exception.

Every outcome must be one of: the parser accepts the arguments; argparse exits with code 2 (usage error)
or 0 (--help, --version); or the command fails early with a PriorStudioError and its documented exit code.
The commands run here all fail before any real work (a missing input, a missing weights file), so the
tests stay fast; the parameter checks the commands apply later are fuzzed directly.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from priorstudio import cli
from priorstudio.core.errors import PriorStudioError

EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 130}
MISSING = "/nonexistent/priorstudio-fuzz"
#: An output path in a folder that exists; never written, since every command here fails before saving.
OUT = str(Path(tempfile.gettempdir()) / "priorstudio-fuzz-never-written.png")
#: Examples per property; raise it for a deeper local run: PRIORSTUDIO_FUZZ_EXAMPLES=2000 pytest tests/test_cli_fuzz.py
FUZZ = settings(
    max_examples=int(os.environ.get("PRIORSTUDIO_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

PARSER = cli.build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMANDS = _subparsers(PARSER)
BENCHES = _subparsers(COMMANDS["bench"])

# -- value strategies ----------------------------------------------------------------------------------------
_weird_floats = st.sampled_from(["nan", "inf", "-inf", "-0", "1e309", "-1e-320", "0x10", "1_0", "", " ", "½"])
_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    _weird_floats,
)
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_token = st.one_of(_numbers, _text, st.sampled_from(["-", "--", "-o", "--=", "-q", "-n", "--help=x"]))


_KERNELS = ["gaussian:2", "gaussian:0.5", "box:3", "motion:5,30", "box:x", "motion:5,", "motion:,", "gaussian:-1"]
_TASKS = ["denoise", "inpaint", "pixels", "sr", "lowpass", "cs", "blur", "colorize", "SR", ""]


def _typed(action: argparse.Action) -> st.SearchStrategy[str]:
    """A value of the option's own type, often out of range (negative, zero, huge, NaN)."""
    if action.choices is not None:
        return st.sampled_from([str(c) for c in action.choices])
    if action.type is int:
        return st.one_of(st.integers(-3, 40), st.integers(-(2**70), 2**70)).map(str)
    if action.type is float:
        return st.one_of(st.floats(-2.0, 2.0), st.floats(allow_nan=True, allow_infinity=True)).map(repr)
    if action.dest == "kernel":
        return st.sampled_from(_KERNELS)
    if action.dest == "task":
        return st.sampled_from(_TASKS)
    return _text


def _value_for(action: argparse.Action, hostile: bool) -> st.SearchStrategy[str]:
    if not hostile:
        return _typed(action)
    return st.one_of(_typed(action), _token)


def _well_formed(
    name: str, sub: argparse.ArgumentParser, positionals: list[str], *, hostile: bool = True
) -> st.SearchStrategy[list[str]]:
    """Argument lists shaped like real ones: known options with values of their type (out of range too);
    ``hostile`` mixes in tokens of the wrong type."""
    options = [a for a in sub._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]

    @st.composite
    def build(draw: st.DrawFn) -> list[str]:
        argv = [*name.split(), *positionals]
        for action in draw(st.lists(st.sampled_from(options), max_size=6)) if options else []:
            argv.append(draw(st.sampled_from(action.option_strings)))
            if action.nargs != 0:
                argv.append(draw(_value_for(action, hostile)))
        return argv

    return build()


def _option_soup(name: str, sub: argparse.ArgumentParser) -> st.SearchStrategy[list[str]]:
    """Argument lists of known option strings and random tokens in any order."""
    flags = [s for a in sub._actions for s in a.option_strings if s not in ("-h", "--help")]
    piece = st.one_of(st.sampled_from(flags), _token) if flags else _token
    return st.lists(piece, max_size=8).map(lambda rest: [*name.split(), *rest])


def _parse_outcome(argv: list[str]) -> argparse.Namespace | None:
    """Parse; a usage error must be argparse's exit 2 (0 for --help/--version)."""
    try:
        return PARSER.parse_args(argv)
    except SystemExit as exc:
        assert exc.code in (0, 2), (argv, exc.code)
        return None


# -- the parser alone ---------------------------------------------------------------------------------------
@FUZZ
@given(argv=st.lists(_token, max_size=8))
def test_parser_on_random_tokens(argv: list[str]) -> None:
    _parse_outcome(argv)


@FUZZ
@given(argv=st.sampled_from(sorted(COMMANDS)).flatmap(lambda name: _option_soup(name, COMMANDS[name])))
def test_parser_on_option_soup(argv: list[str]) -> None:
    _parse_outcome(argv)


@FUZZ
@given(argv=st.sampled_from(sorted(BENCHES)).flatmap(lambda n: _well_formed(f"bench {n}", BENCHES[n], [MISSING])))
def test_parser_on_bench_commands(argv: list[str]) -> None:
    _parse_outcome(argv)


# -- commands that must fail early and cleanly ---------------------------------------------------------------
def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Run the command; a refusal must be one line on stderr with a documented non-zero exit code."""
    threads = torch.get_num_threads()
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors: a usage line and an error line, checked elsewhere
        assert exc.code in (0, 2), (argv, exc.code)
        return
    finally:
        torch.set_num_threads(threads)  # `train --threads N` must not leak into other tests
        err = capsys.readouterr().err
    assert code in EXIT_CODES, (argv, code)
    if code != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        expected = "priorstudio: interrupted" if code == 130 else "priorstudio: error: "
        assert len(lines) == 1 and lines[0].startswith(expected), (argv, code, err)


_restore_missing_input = _well_formed("restore", COMMANDS["restore"], [MISSING + ".png", "-o"]).map(
    lambda argv: [*argv[:3], OUT, *argv[3:]]
)


@FUZZ
@given(argv=_restore_missing_input)
def test_restore_with_hostile_options_fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """The input does not exist, so the command must stop with an exit code, whatever the options."""
    _run_main(argv, capsys)


@FUZZ
@given(argv=_well_formed("sample", COMMANDS["sample"], ["-o", MISSING + "-dir"]))
def test_sample_with_hostile_options_fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*argv, "--model", MISSING + ".pt"]  # the last --model wins: never a real run
    _run_main(argv, capsys)


@FUZZ
@given(argv=_well_formed("train", COMMANDS["train"], [MISSING, "--out", MISSING + ".pt"]))
def test_train_with_hostile_options_fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in argv if a != "--resume"]
    argv[1] = MISSING  # the data folder never exists
    _run_main(argv, capsys)


@FUZZ
@given(
    argv=st.sampled_from(["denoise", "inverse"]).flatmap(lambda n: _well_formed(f"bench {n}", BENCHES[n], [MISSING]))
)
def test_bench_on_a_missing_folder_fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in argv if a != "--json"]
    _run_main(argv, capsys)


# -- the checks restore applies once the input has loaded ----------------------------------------------------
@pytest.fixture(scope="module")
def small_image() -> torch.Tensor:
    return torch.rand(1, 12, 10, generator=torch.Generator().manual_seed(0))


@FUZZ
@given(
    argv=_well_formed("restore", COMMANDS["restore"], ["in.png", "-o", "out.png"], hostile=False).filter(
        lambda argv: not any(a.startswith("--mask") for a in argv)
    )
)
def test_restore_parameter_checks_are_total(argv: list[str], small_image: torch.Tensor) -> None:
    """Sampler and task parameters: either valid (finite, in range) or a PriorStudioError — nothing else."""
    from priorstudio.core.problem import build_problem

    args = _parse_outcome(argv)
    if args is None:
        return
    try:
        params = cli._sampler_params(args)
    except PriorStudioError:
        params = None
    if params is not None:
        assert 0 < params.sigma_L < params.sigma_0 and math.isfinite(params.sigma_0)
        assert 0 < params.beta <= 1 and 0 < params.h_0 < 1
        assert params.max_steps >= 1
    noise = args.noise if args.noise is not None else 0.0
    try:
        task_params = cli._task_params(args, tuple(small_image.shape[-2:]))
        operator_seed = task_params.pop("seed", None)
        build_problem(
            small_image,
            args.task,
            mode=args.mode,
            noise_sigma=noise / 255,
            seed=args.seed,
            operator_seed=operator_seed,
            **task_params,
        )
    except PriorStudioError:
        pass


# -- inputs the fuzzing once crashed on: each must now be a clear parameter error ------------------------


@pytest.fixture(scope="module")
def folder_with_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    from priorstudio.core.denoisers import BiasFreeUNet
    from priorstudio.core.denoisers.registry import save_weights

    folder = tmp_path_factory.mktemp("fuzz")
    Image.new("L", (16, 16), 128).save(folder / "a.png")
    save_weights(folder / "tiny.pt", BiasFreeUNet(1, (8, 16)))
    return folder


@pytest.mark.parametrize("widths", ["", "8,x", "8,,16"])
def test_train_widths_that_are_not_numbers(widths: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", MISSING, "--out", MISSING + ".pt", "--widths", widths]) == 2


@pytest.mark.parametrize("value", ["-1", "0", "2147483648"])
def test_train_threads_out_of_range(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        assert cli.main(["train", MISSING, "--out", MISSING + ".pt", "--threads", value]) == 2
    finally:
        torch.set_num_threads(threads)
    assert "--threads must be between 1 and" in capsys.readouterr().err


def test_train_negative_tail(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", MISSING, "--out", MISSING + ".pt", "--tail", "-1"]) == 2
    assert "--tail is a number of layers" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-0.5", "3", "nan"])
def test_train_sigma_weight_out_of_range(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", MISSING, "--out", MISSING + ".pt", "--sigma-weight", value]) == 2
    assert "--sigma-weight must be between 0 and 2" in capsys.readouterr().err


def test_bench_denoise_sigmas_that_are_not_numbers(folder_with_model: Path, capsys) -> None:
    argv = ["bench", "denoise", str(folder_with_model), "--model", str(folder_with_model / "tiny.pt")]
    assert cli.main([*argv, "--sigmas", "abc"]) == 2


def test_bench_speed_sizes_that_are_not_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "speed", "--sizes", "x"]) == 2


@pytest.mark.parametrize("block", ["nan", "inf"])
def test_restore_block_not_finite(block: str, folder_with_model: Path, capsys) -> None:
    image, model = folder_with_model / "a.png", folder_with_model / "tiny.pt"
    argv = ["restore", str(image), "-o", OUT, "--model", str(model), "--task", "inpaint"]
    assert cli.main([*argv, "--block", block]) == 2


def test_restore_seed_beyond_64_bits(folder_with_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, model = folder_with_model / "a.png", folder_with_model / "tiny.pt"
    argv = ["restore", str(image), "-o", OUT, "--model", str(model)]
    assert cli.main([*argv, "--seed", str(2**70)]) == 2


def test_sample_huge_n_is_refused_without_trying_every_name(
    folder_with_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A huge -n once hung `sample`: it checked every one of the n output names before the memory check."""
    checked: list[Path] = []
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self, **kw: checked.append(self) or real_exists(self, **kw))
    argv = ["sample", "-n", str(10**6), "-o", str(tmp_path / "out"), "--model", str(folder_with_model / "tiny.pt")]
    assert cli.main([*argv, "-q"]) == 6
    assert len(checked) < 100
    assert "needs about" in capsys.readouterr().err


def test_sample_into_a_file(folder_with_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sample", "-n", "2", "--size", "8", "-o", str(folder_with_model / "a.png"), "--max-steps", "1", "-q"]
    assert cli.main([*argv, "--model", str(folder_with_model / "tiny.pt")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_known_outcomes() -> None:
    """Anchor the fuzz targets: a usage error is exit 2, a missing input exit 3, --version exit 0."""
    with pytest.raises(SystemExit) as info:
        PARSER.parse_args(["restore"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        PARSER.parse_args(["--version"])
    assert info.value.code == 0
    assert cli.main(["restore", MISSING + ".png", "-o", OUT]) == 3


def test_task_names_in_any_case_are_one_task(folder_with_model: Path, tmp_path: Path, capsys) -> None:
    """`--task Denoise` simulates its default noise and `--task INPAINT` keeps the known pixels, as lower case."""
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)).save(photo)
    model = str(folder_with_model / "tiny.pt")
    for task, extra in (("denoise", []), ("inpaint", ["--block", "0.5"])):
        outs = []
        for spelled in (task, task.capitalize(), task.upper()):
            out = tmp_path / f"{spelled}.png"
            argv = ["restore", str(photo), "-o", str(out), "--task", spelled, "--mode", "simulate", *extra]
            assert cli.main([*argv, "--model", model, "--max-steps", "2", "-q"]) == 0, capsys.readouterr().err
            outs.append(out.read_bytes())
        assert outs[0] == outs[1] == outs[2]


def test_a_motion_blur_of_any_length_is_read_as_the_app_reads_it() -> None:
    from priorstudio.core.operators import motion_kernel

    assert torch.equal(cli._parse_kernel("motion:9.5,30"), motion_kernel(9.5, 30.0))
