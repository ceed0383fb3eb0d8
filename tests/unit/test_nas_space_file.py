"""`mcuflow search --space`: a user's TOML file of the search space's choices."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import mcuflow.nas.command  # noqa: F401  (registers `mcuflow search` on the CLI)
import mcuflow.nas.pipeline
from mcuflow.errors import McuflowError
from mcuflow.nas.pipeline import TrainingEpochs, training_jobs
from mcuflow.nas.search import SearchResult, SpaceChoice, mobilenet_v2
from mcuflow.nas.space import SearchSpace, Stage, default_space, held, sample
from mcuflow.nas.space_file import SpaceEdits, read_space
from tests.support import run_cli

torch = pytest.importorskip("torch")

EVERY_KEY = """\
kernels = [5, 3]
expansions = [1, 4]
widths = [1, 0.5]
resolutions = [20, 12]
stem_channels = 8
stem_stride = 2
head_channels = 64

[[stages]]
channels = 16
min_depth = 1
max_depth = 2
stride = 1

[[stages]]
channels = 40
min_depth = 2
max_depth = 3
stride = 2
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def test_every_key_is_read_sorted_and_applied(tmp_path: Path) -> None:
    space = read_space(_file(tmp_path, EVERY_KEY)).applied(default_space(2, 8, 1.5))
    assert space == SearchSpace(
        dims=2, aspect=1.5, kernels=(3, 5), expansions=(1, 4), widths=(0.5, 1.0),
        resolutions=(12, 20), stem_channels=8, stem_stride=2, head_channels=64,
        stages=(Stage(16, 1, 2, 1), Stage(40, 2, 3, 2)))


def test_keys_left_out_keep_the_space_chosen_for_the_data(tmp_path: Path) -> None:
    chosen = default_space(1, 40)
    edits = read_space(_file(tmp_path, "kernels = [3]\nwidths = [0.75]\n"))
    assert edits.applied(chosen) == dataclasses.replace(chosen, kernels=(3,), widths=(0.75,))
    assert read_space(_file(tmp_path, "")).applied(chosen) == chosen


@pytest.mark.parametrize(("text", "message", "hint"), [
    ("kernels = [3, 4]", "kernels must be a list of distinct odd integers from 1 to 9, "
     "got [3, 4]", "e.g. kernels = [3, 5, 7]"),
    ("kernels = 3", "kernels must be a list of distinct odd integers", "e.g. kernels"),
    ("kernels = [[3], [3]]", "kernels must be a list of distinct odd integers", "e.g. kernels"),
    ("expansions = []", "expansions must be a list of distinct integers from 1 to 8, got []",
     "e.g. expansions"),
    ("expansions = [3, 3]", "expansions must be a list of distinct", "e.g. expansions"),
    ("widths = [0, 0.5]", "widths must be a list of distinct numbers above 0 up to 4",
     "e.g. widths"),
    ("widths = [true]", "widths must be a list", "e.g. widths"),
    ("resolutions = [2]", "resolutions must be a list of distinct integers from 4 to 512",
     "e.g. resolutions"),
    ("stem_stride = 3", "stem_stride must be an integer from 1 to 2, got 3",
     "e.g. stem_stride = 2"),
    ("head_channels = -1", "head_channels must be an integer from 0 to 1024", "e.g."),
    ("kernel = [3]", "unknown key 'kernel'", "known keys: kernels, expansions"),
    ("stages = [1]", "stages must be 1 to 8 [[stages]] tables", "e.g. [[stages]]"),
    ("[[stages]]\nchannels = 16\nmin_depth = 1\nmax_depth = 2",
     "stage 1: a stage has exactly the keys channels, min_depth, max_depth, stride, got "
     "channels, min_depth, max_depth", "e.g. [[stages]]"),
    ("[[stages]]\nchannels = 16\nmin_depth = 3\nmax_depth = 2\nstride = 1",
     "stage 1: min_depth 3 is above max_depth 2", "min_depth to max_depth"),
    ("[[stages]]\nchannels = 16\nmin_depth = 1\nmax_depth = 2\nstride = 4",
     "stage 1: stride must be an integer from 1 to 2, got 4", "e.g. stride = 2"),
    ("kernels = [3", "is not valid TOML", "'Your own search space' in the README"),
    ("a.b.c.d = 1", "nests tables or arrays more than 3 levels deep", "README"),
])
def test_a_wrong_space_file_is_one_clear_error(tmp_path: Path, text: str, message: str,
                                               hint: str) -> None:
    with pytest.raises(McuflowError) as raised:
        read_space(_file(tmp_path, text))
    assert raised.value.message.startswith(f"space file {tmp_path / 'space.toml'}")
    assert message in raised.value.message and hint in raised.value.hint


def test_the_command_refuses_a_wrong_space_file_before_the_data(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is read first: a wrong one is one line, and no data is read."""
    monkeypatch.setattr(mcuflow.nas.pipeline, "load_dataset", _never_called)
    code, err = run_cli(capsys, ["search", "--data", "digits", "--board", "nucleo-f091rc",
                                 "--space", str(_file(tmp_path, "kernels = [2]")),
                                 "-o", str(tmp_path / "out")])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("mcuflow: error: space file ") and "kernels" in lines[0]
    assert not (tmp_path / "out").exists()


TINY = ["--board", "tiny16k", "--board-file",
        str(Path(__file__).parents[2] / "bench/boards/tiny16k.toml")]


@pytest.mark.parametrize(("data", "board", "text", "searched_as"), [
    ("digits", ["--board", "nucleo-f091rc"], "kernels = [3, 5]\nexpansions = [2, 3]",
     {"kernels": (3, 5), "expansions": (2, 3), "stages": default_space(2, 8).stages}),
    # no scaled MobileNetV2 fits tiny16k at 24 steps: without resolutions 12 and 8 would join
    ("mnist1d", TINY, "resolutions = [24]\nexpansions = [1]\nwidths = [0.5]",
     {"resolutions": (24,), "expansions": (1,), "kernels": (3, 5, 7)}),
])
def test_the_search_runs_in_the_files_space(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            data: str, board: list[str], text: str,
                                            searched_as: dict[str, object]) -> None:
    """The space the search gets is the data's with the file's choices; resolutions as given."""
    searched: list[SearchSpace] = []

    def search(_parts: object, space: SearchSpace, *_args: object) -> None:
        searched.append(space)
        raise McuflowError("stopped here", "the test stops the search")

    monkeypatch.setattr(mcuflow.nas.pipeline, "search", search)
    code, err = run_cli(capsys, ["search", "--data", data, *board, "--space",
                                 str(_file(tmp_path, text)), "-o", str(tmp_path / "out")])
    assert code == 2 and "stopped here" in err
    assert {key: getattr(searched[0], key) for key in searched_as} == searched_as


def _never_called(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the data was read")


@pytest.mark.parametrize("edits", [SpaceEdits(expansions=(2, 3)), SpaceEdits(kernels=(1,))])
def test_a_baseline_outside_the_supernet_trains_from_scratch_only(edits: SpaceEdits) -> None:
    """The scaled MobileNetV2 (kernels 3, expansion 6) is not a slice of these supernets.

    Its expansion 6 does not fit their hidden channels, and its kernel 3 copied from a 1 x 1
    supernet was the one tap repeated nine times: extract refuses it.
    """
    from mcuflow.nas import supernet

    space = edits.applied(default_space(2, 8))
    baseline = mobilenet_v2(space, 0.5, 8)
    assert not held(baseline, space)
    result = _result(space, SpaceChoice(0.5, 8, 1, 1, 1.0, (1,)))
    jobs = training_jobs("baseline", baseline, TrainingEpochs(1, 1), result, 0)
    assert [job.start for job in jobs] == ["scratch"]
    with pytest.raises(ValueError, match="not a subnet"):
        supernet.extract(supernet.Supernet(space, 0.5, 1, 10), baseline)


def test_a_sample_of_the_space_trains_from_the_supernet() -> None:
    space = SpaceEdits(kernels=(3, 5), expansions=(2, 3)).applied(default_space(2, 8))
    arch = sample(space, np.random.default_rng(0), 0.5, 8)
    assert held(arch, space)
    jobs = training_jobs("winner", arch, TrainingEpochs(1, 1),
                         _result(space, SpaceChoice(0.5, 8, 1, 1, 1.0, (1,))), 0)
    assert [job.start for job in jobs] == ["supernet", "scratch"]


def _result(space: SearchSpace, chosen: SpaceChoice) -> SearchResult:
    fields = {field.name: None for field in dataclasses.fields(SearchResult)}
    return SearchResult(**{**fields, "space": space, "chosen": chosen, "supernet_state": b""})

