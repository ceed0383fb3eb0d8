"""Measure, by linking probe firmware, the flash bytes of the kernels, structs and runtime.

Every probe is compiled with build_cortexm's flags and linked with the generated linker script and
--gc-sections, as a model's firmware is. The linker map says which input sections each probe
keeps: a kernel's bytes are the sections that linking it (`--undefined`) adds to a firmware whose
model runs no kernel; sections that several kernels add (shared static helpers, libgcc and libm
routines) are recorded once as support entries.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile

from mcuflow.codegen.context import ConstantPool, LayerCode
from mcuflow.codegen.emit_dsp import DSP_HEADER
from mcuflow.codegen.external import external_layout
from mcuflow.codegen.external_crypto import CRYPTO_FILES
from mcuflow.codegen.firmware import QEMU_SEMIHOSTING, RAM_REGIONS, Firmware, Io, MemoryMap
from mcuflow.codegen.flash import array_flash_bytes, estimate_flash, kernel_calls
from mcuflow.codegen.project import kernel_files, render_project
from mcuflow.codegen.render import COMMON_HEADER, KERNELS_HEADER, emit_layers
from mcuflow.codegen.targets import CORTEX_M_LDFLAGS, template
from mcuflow.errors import ToolchainError
from mcuflow.hw.board import Board, TierKind, get_board, load_boards
from mcuflow.hw.kernel_code import KernelCode, RunFit, TargetCode
from mcuflow.hw.kernels import KERNELS, Kernel
from mcuflow.hw.memory_map import region
from mcuflow.ir import zoo
from mcuflow.ir.builder import GraphBuilder
from mcuflow.ir.graph import Graph
from mcuflow.ir.ops import OpKind
from mcuflow.memory.patches import (
    PatchChoice,
    PatchMode,
    find_stages,
    patch_rewrite,
    spill_traffic,
)
from mcuflow.memory.placement import plan_for_order
from mcuflow.memory.plan import ExternalWeights, Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.memory.schedule import build_problem
from mcuflow.quant.codebook import compress_graph
from mcuflow.toolchain.arm import (
    BUILD_TIMEOUT_S,
    compiler_flags,
    cortex_m_core,
    cross_sources,
    elf_sizes,
    find_cross_compiler,
)
from mcuflow.toolchain.host import run_tool

PROBE_BOARD = "nucleo-f767zi"
"""Sizes the probes' linker script (2 MiB flash, 512 KiB SRAM: room for every probe)."""
FLASH_SECTIONS = frozenset({".vectors", ".text", ".rodata", ".ARM.exidx", ".data"})
"""Output sections of mcuflow.ld stored in flash (.data by its load image)."""
STRUCT_HEADERS = (COMMON_HEADER, KERNELS_HEADER, DSP_HEADER, CRYPTO_FILES[0])
"""The probe's headers declaring parameter structs (its KERNELS_HEADER: every kernel's), and
the crypto header declaring the keys' structs (their static RAM: crypto_ram_bytes)."""
PLAN_SECONDS = 0.2
EXTERNAL_PROBE_LAYERS = 8
"""Layers of the probe whose constants are read from an external image (_external)."""
SPILL_PROBE_STEPS = 8
"""Row steps of the spilling probe's cached stage."""
SPILL_RAM_BOARD = "stm32f746g-disco"
"""Its SDRAM tier and region hold the spill area of the probe spilling to external RAM."""
SPILL_NOR_BOARD = "nrf52840"
"""Its QSPI NOR flash tier is the spill tier of the probe spilling to NOR flash."""
_SPILL_STATEMENT = re.compile(r"\n[ \t]*if \(MCUFLOW_SPILL_(?:READ|WRITE)\(.*\) != 0\) \{\n"
                              r"[ \t]*return MCUFLOW_ERROR_STORAGE;\n[ \t]*\}")
"""A write or read of a spilled activation in the run function (emit._spill_writes)."""
_SPILL_AREA = re.compile(r"\nstatic uint8_t \w+spill_area\[[^\n]*;")
"""The spill area in external RAM (render._spill_buffer), unused once its accesses are gone."""
PROBE_KEY = bytes(range(16))
"""The key the encrypted probe's image is sealed with (its size does not depend on it)."""
ALIGNMENT_ALLOWANCE = 32
"""The largest alignment of a section the firmware links (newlib's strlen): a model's padding
may exceed that of every fit model by up to this."""
_OUTPUT = re.compile(r"^(\.\S+)")
_INPUT = re.compile(r"^ (\.\S+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+) (\S.*)$", re.M)
_STRUCT_TYPE = re.compile(r"^} (mcuflow_\w+_t);", re.M)


@dataclass(frozen=True)
class Linked:
    """A linked probe: its flash bytes and its flash input sections, `origin:name` -> bytes.

    The origin is an object's file name or an archive member (`libgcc.a(_udivsi3.o)`).
    """

    elf: Path
    flash_bytes: int
    sections: dict[str, int]

    def added(self, base: Linked) -> dict[str, int]:
        """The sections this probe keeps that `base` does not."""
        return {k: v for k, v in self.sections.items() if k not in base.sections}


def compile_objects(directory: Path, target: str, sources: list[str]) -> dict[str, Path]:
    """Compile C files of `directory` to `obj/<stem>.o`; source name -> object."""
    cc, flags = find_cross_compiler(), compiler_flags(target)
    (directory / "obj").mkdir(exist_ok=True)
    objects = {source: directory / "obj" / f"{Path(source).stem}.o" for source in sources}
    for source, obj in objects.items():
        run_tool([cc, *flags, "-c", "-o", str(obj), source], directory, Path(cc).name,
                 BUILD_TIMEOUT_S)
    return objects


def link(directory: Path, target: str, objects: list[Path], name: str,
         roots: tuple[str, ...] = ()) -> Linked:
    """Link `objects` with the linker script of `directory`, keeping symbols `roots` too."""
    elf, mapfile = directory / f"{name}.elf", directory / f"{name}.map"
    keep = [f"-Wl,--undefined={root}" for root in roots]
    cc = find_cross_compiler()
    run_tool([cc, *compiler_flags(target), *CORTEX_M_LDFLAGS, *keep, f"-Wl,-Map={mapfile}",
              "-o", str(elf), *map(str, objects), "-lm"], directory, Path(cc).name,
             BUILD_TIMEOUT_S)
    return Linked(elf, elf_sizes(elf).flash_bytes, flash_sections(mapfile.read_text()))


def _origin(path: str) -> str:
    """An object's file name, or `archive(member)` for an archive member."""
    file, _, member = path.partition("(")
    return Path(file).name + (f"({member}" if member else "")


def flash_sections(text: str) -> dict[str, int]:
    """The input sections a GNU ld map places in FLASH_SECTIONS: `origin:name` -> bytes."""
    body = text.split("Linker script and memory map", 1)[-1]
    sections: dict[str, int] = {}
    for block in re.split(r"\n(?=\S)", body):
        heading = _OUTPUT.match(block)
        if heading is None or heading.group(1) not in FLASH_SECTIONS:
            continue
        for name, size, origin in _INPUT.findall(block):
            key = f"{_origin(origin.strip())}:{name}"
            sections[key] = sections.get(key, 0) + int(size, 16)
    return {key: size for key, size in sections.items() if size}


def _nocode_graph(tensors: int) -> Graph:
    """`tensors` inputs, each RESHAPEd to an output: planned as aliases, the steps run no code."""
    b = GraphBuilder("probe")
    outputs = [b.reshape(b.input((1, 4, 4, 2), 0.02, 0), (1, 32)) for _ in range(tensors)]
    return b.output(*outputs).build()


def _kernels(target: str) -> list[Kernel]:
    """The catalogue's kernels the emitters may call on `target` (DSP ones need the extension)."""
    dsp = cortex_m_core(target).dsp
    return [k for k in KERNELS.values() if dsp or not k.dsp]


def _plan(graph: Graph, target: str) -> Plan:
    return plan_memory(graph, PLAN_SECONDS, dsp=cortex_m_core(target).dsp)


def _project(directory: Path, graph: Graph, target: str, board: Board,
             firmware: Firmware = QEMU_SEMIHOSTING, plan: Plan | None = None,
             unspilled: bool = False) -> list[str]:
    """Write the project of `graph` with every kernel file of `target`; its C files in order.

    `plan` lays it out (by default its own plan); `unspilled` drops the statements that write
    and read spilled activations (to measure what they add).
    """
    plan = plan or _plan(graph, target)
    key = PROBE_KEY if plan.external is not None and plan.external.encrypted else None
    files, _ = render_project(graph, plan, target, board, firmware=firmware, external_key=key)
    if unspilled:
        files = _unspilled(files, plan)
    files |= kernel_files(sorted({k.source for k in _kernels(target)}))
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return cross_sources(directory)


@dataclass(frozen=True)
class _Probe:
    """The base probe of a target: every kernel compiled, a model running none of them."""

    directory: Path
    target: str
    objects: dict[str, Path]
    base: Linked

    def kernel_objects(self) -> dict[str, Path]:
        """The compiled kernel files, by source name."""
        stems = {f"{k.source}.c" for k in _kernels(self.target)}
        return {name: obj for name, obj in self.objects.items() if name in stems}

    def build(self, name: str, graph: Graph, board: Board,
              firmware: Firmware = QEMU_SEMIHOSTING, plan: Plan | None = None,
              unspilled: bool = False) -> Linked:
        """Link the firmware of `graph`, compiling all but the kernels (reused from the base)."""
        directory = self.directory / name
        sources = _project(directory, graph, self.target, board, firmware, plan, unspilled)
        kernels = self.kernel_objects()
        own = compile_objects(directory, self.target, [s for s in sources if s not in kernels])
        return link(directory, self.target, [own.get(s) or kernels[s] for s in sources], name)


def _base_probe(directory: Path, target: str) -> _Probe:
    sources = _project(directory, _nocode_graph(1), target, get_board(PROBE_BOARD))
    objects = compile_objects(directory, target, sources)
    return _Probe(directory, target, objects, link(directory, target, list(objects.values()),
                                                   "base"))


def _alignments(objects: list[Path]) -> dict[str, int]:
    """`object:section` -> the section's alignment, for every section of `objects`."""
    found: dict[str, int] = {}
    for obj in objects:
        with obj.open("rb") as stream:
            for section in ELFFile(stream).iter_sections():
                found[f"{obj.name}:{section.name}"] = section["sh_addralign"]
    return found


def _with_padding(sections: dict[str, int], alignments: dict[str, int]) -> dict[str, int]:
    """Each section's bytes plus the most padding the linker may put before it.

    That is its alignment - 1, wherever the firmware places it.
    """
    return {key: size + max(alignments.get(key, 1) - 1, 0) for key, size in sections.items()}


def _kernel_codes(probe: _Probe) -> tuple[dict[str, KernelCode], dict[str, int]]:
    """Each kernel's own bytes and shared sections, and the bytes of the shared sections.

    Every section counts the padding its alignment may need (_with_padding).
    """
    alignments = _alignments(list(probe.objects.values()))
    added = {k.function: _with_padding(link(probe.directory, probe.target,
                                            list(probe.objects.values()), k.function,
                                            (k.function,)).added(probe.base), alignments)
             for k in _kernels(probe.target)}
    counts = Counter(key for sections in added.values() for key in sections)
    shared = {key for key, count in counts.items() if count > 1}
    codes = {function: KernelCode(sum(v for k, v in sections.items() if k not in shared),
                                  tuple(sorted(k for k in sections if k in shared)))
             for function, sections in added.items()}
    support = {key: size for sections in added.values() for key, size in sections.items()
               if key in shared}
    return codes, dict(sorted(support.items()))


def _uart_boards() -> list[Board]:
    """One packaged board per kind of console UART."""
    kinds = {b.console.kind: b for b in load_boards().values() if b.console is not None}
    return list(kinds.values())


def _runtimes(probe: _Probe) -> dict[str, int]:
    """Flash of the no-kernel firmware per application; UART: the largest over UART kinds."""
    board = get_board(PROBE_BOARD)
    graph = _nocode_graph(1)
    uart = max(probe.build(f"uart-{b.id}", graph, b, Firmware(MemoryMap.QEMU, Io.UART))
               .flash_bytes for b in _uart_boards())
    none = probe.build("none", graph, board, Firmware(MemoryMap.QEMU, Io.NONE)).flash_bytes
    return {Io.SEMIHOSTING.value: probe.base.flash_bytes, Io.UART.value: uart,
            Io.NONE.value: none}


def _per_tensor(probe: _Probe) -> int:
    """Bytes per model input or output beyond one of each (three of each vs one)."""
    linked = probe.build("tensors", _nocode_graph(3), get_board(PROBE_BOARD))
    return round((sum(linked.sections.values()) - sum(probe.base.sections.values())) / 4)


def _layers_graph() -> Graph:
    """EXTERNAL_PROBE_LAYERS layers, each with its own weights and bias.

    3 x 3 convolutions and depthwise convolutions in turn: window structs, as most image
    models' steps have.
    """
    b = GraphBuilder("external_probe")
    x = b.input((1, 8, 8, 16), 0.05, 0)
    for layer in range(EXTERNAL_PROBE_LAYERS):
        x = b.depthwise_conv2d(x, (3, 3)) if layer % 2 else b.conv2d(x, 16, (3, 3))
    return b.output(x).build()


def _reading(plan: Plan, steps: int, encrypted: bool) -> Plan:
    """`plan` with the constants of its first `steps` steps read from an external image."""
    return replace(plan, external=ExternalWeights("sd_card", frozenset(range(steps)),
                                                  encrypted))


def _external(probe: _Probe) -> tuple[dict[str, int], int]:
    """What one external chunk adds, plain and encrypted, and each further chunk.

    The probe's layers are linked with every constant in flash, then with the first layer's
    (one chunk) and with all of them (EXTERNAL_PROBE_LAYERS chunks) read externally; the bytes
    of the arrays that left flash are added back.
    """
    graph = _layers_graph()
    plan = _plan(graph, probe.target)
    board = get_board(PROBE_BOARD)
    inside = probe.build("external-none", graph, board, plan=plan).flash_bytes

    def added(name: str, steps: int, encrypted: bool) -> int:
        reading = _reading(plan, steps, encrypted)
        layout = external_layout(reading, *emit_layers(graph, reading,
                                                       cortex_m_core(probe.target).dsp))
        assert layout is not None
        moved = sum(array_flash_bytes(a.nbytes) for chunk in layout.chunks for a in chunk.arrays)
        return probe.build(name, graph, board, plan=reading).flash_bytes + moved - inside

    one = {"plain": added("external-plain", 1, False),
           "encrypted": added("external-encrypted", 1, True)}
    every = added("external-every", EXTERNAL_PROBE_LAYERS, False)
    return one, round((every - one["plain"]) / (EXTERNAL_PROBE_LAYERS - 1))


def _unspilled(files: dict[str, str], plan: Plan) -> dict[str, str]:
    """`files` without the plan's spill writes and reads; each must be found once."""
    stripped = {name: _SPILL_STATEMENT.subn("", text) for name, text in files.items()}
    traffic = spill_traffic(plan.graph, plan.spilled)
    if sum(count for _, count in stripped.values()) != len(traffic.writes) + len(traffic.reads):
        raise ToolchainError("the spill statements the model emits no longer match "
                             "code_size._SPILL_STATEMENT", "update the pattern to the emitter")
    return {name: _SPILL_AREA.sub("", text) for name, (text, _) in stripped.items()}


def _spilling_plans() -> tuple[Graph, list[Plan]]:
    """A model and two plans of it whose cached stage spills few and many tensors."""
    graph = zoo.mobilenet_v2_like(32, 0.35, 10)
    stage = find_stages(graph)[-1]
    spillable = [graph.operators[i].outputs[0] for i in stage.ops[:-1]
                 if graph.operators[i].kind is not OpKind.PAD]
    plans = []
    for spilled in (spillable[:2], spillable):
        choice = PatchChoice(stage.end, SPILL_PROBE_STEPS, 1, PatchMode.CACHED, tuple(spilled))
        patched = patch_rewrite(graph, stage, choice)
        problem = build_problem(patched.graph, split=True, spilled=patched.spilled)
        plan = plan_for_order(problem, list(range(len(patched.graph.operators))))
        plan.patch = choice
        plans.append(plan)
    return graph, plans


def _spill(probe: _Probe) -> dict[str, int]:
    """What spilling adds: the fixed code beside the first access, and each access.

    Each plan's firmware is linked as is and with its spill statements dropped; the difference
    is the fixed code plus the accesses, fitted on the two plans: `storage` and `access`
    through the storage interface, `ram` and `ram_access` copying to a spill area in external
    RAM, `nor` the fixed code on NOR flash (the storage's with the slot and erase code),
    `sealed` and `sealed_access` encrypted (--encrypt-external: the storage, AES, CMAC, key
    and nonce code, and each sealing or opening call); `beside_image` and
    `sealed_beside_image` the fixed code of a plain spill beside a plain external image and
    of an encrypted one beside an encrypted image, which share the storage (and the AES,
    CMAC and key code) with the image's, and each access there.
    """
    graph, plans = _spilling_plans()
    storage, access = _spill_fit(probe, graph, plans, plans, QEMU_SEMIHOSTING, "spill")
    ram_board = get_board(SPILL_RAM_BOARD)
    sdram = region(ram_board.regions, RAM_REGIONS[TierKind.SDRAM])
    in_ram = [replace(plan, spill_tier=ram_board.tier(TierKind.SDRAM)) for plan in plans]
    ram, ram_access = _spill_fit(probe, graph, in_ram, in_ram, Firmware(spill_ram=sdram),
                                 "spill-ram")
    nor_tier = get_board(SPILL_NOR_BOARD).tier(TierKind.QSPI_FLASH)
    on_nor = [replace(plan, spill_tier=nor_tier) for plan in plans]
    nor, _ = _spill_fit(probe, graph, on_nor, plans, QEMU_SEMIHOSTING, "spill-nor")
    sealed_plans = [replace(plan, spill_encrypted=True) for plan in plans]
    sealed, sealed_access = _spill_fit(probe, graph, sealed_plans, plans, QEMU_SEMIHOSTING,
                                       "spill-sealed")
    imaged = [_imaged(plan, False) for plan in plans]
    beside, beside_access = _spill_fit(probe, graph, imaged, imaged, QEMU_SEMIHOSTING,
                                       "spill-image")
    sealed_beside, sealed_beside_access = _spill_fit(
        probe, graph, [_imaged(p, True) for p in sealed_plans],
        [_imaged(p, True) for p in plans], QEMU_SEMIHOSTING, "spill-sealed-image")
    return {"storage": storage, "access": access, "ram": ram, "ram_access": ram_access,
            "nor": nor, "sealed": sealed, "sealed_access": sealed_access,
            "beside_image": beside, "beside_image_access": beside_access,
            "sealed_beside_image": sealed_beside,
            "sealed_beside_image_access": sealed_beside_access}


def _imaged(plan: Plan, encrypted: bool) -> Plan:
    """`plan` with every step that has constants reading them from an external image."""
    graph = plan.graph
    steps = frozenset(index for index, step in enumerate(plan.steps)
                      if any(graph.tensors[name].is_constant
                             for name in graph.operators[step.op_index].inputs))
    return replace(plan, external=ExternalWeights("sd_card", steps, encrypted))


def _spill_fit(probe: _Probe, graph: Graph, plans: list[Plan], bare: list[Plan],
               firmware: Firmware, name: str) -> tuple[int, int]:
    """The fixed bytes and the bytes per access that the plans' spill statements add.

    Each plan is measured against its `bare` plan with the spill statements dropped. A line
    through the two plans; when it would start below zero (the accesses of the plan with few
    cost less each, as where they share literals), no fixed bytes and the dearer access.
    """
    board = get_board(PROBE_BOARD)
    added, accesses = [], []
    for index, (plan, without) in enumerate(zip(plans, bare, strict=True)):
        linked = probe.build(f"{name}-{index}", graph, board, firmware, plan=plan).flash_bytes
        dropped = probe.build(f"{name}-{index}-bare", graph, board, firmware, plan=without,
                              unspilled=True)
        added.append(linked - dropped.flash_bytes)
        statements = spill_traffic(plan.graph, plan.spilled)
        accesses.append(len(statements.writes) + len(statements.reads))
    access = (added[1] - added[0]) / (accesses[1] - accesses[0])
    fixed = added[0] - access * accesses[0]
    if fixed < 0:
        return 0, math.ceil(max(a / n for a, n in zip(added, accesses, strict=True)))
    return round(fixed), round(access)


def _struct_sizes(probe: _Probe) -> dict[str, int]:
    """sizeof every parameter struct of the kernel headers, from a probe object's symbols."""
    (probe.directory / CRYPTO_FILES[0]).write_text(template("common", CRYPTO_FILES[0]))
    headers = [h for h in STRUCT_HEADERS if (probe.directory / h).exists()]
    types = [t for h in headers for t in _STRUCT_TYPE.findall((probe.directory / h).read_text())]
    lines = [f'#include "{h}"' for h in headers]
    lines += [f"const {t} mcuflow_sizeof_{t} = {{0}};" for t in types]
    (probe.directory / "struct_sizes.c").write_text("\n".join(lines) + "\n")
    obj = compile_objects(probe.directory, probe.target, ["struct_sizes.c"])["struct_sizes.c"]
    with obj.open("rb") as handle:
        symbols = {s.name: s["st_size"] for s in ELFFile(handle).get_section_by_name(".symtab")
                   .iter_symbols()}
    return {t: symbols[f"mcuflow_sizeof_{t}"] for t in types}


@dataclass(frozen=True)
class _Sample:
    """A fit model: its emitted C and its linked firmware."""

    graph: Graph
    layers: list[LayerCode]
    pool: ConstantPool
    linked: Linked


def fit_graphs() -> dict[str, Graph]:
    """The models whose run functions fit RunFit: few to many calls, every kind of step."""
    b = GraphBuilder("one_call")
    one = b.output(b.fully_connected(b.input((1, 16), 0.02, 0), 4)).build()
    return {"one_call": one, "mobilenet_v2": zoo.mobilenet_v2_like(32),
            "mobilenet_v3": zoo.mobilenet_v3_like(32), "squeezenet": zoo.squeezenet_like(32),
            "resnet": zoo.resnet_like(16), "random_dag": zoo.random_dag(1, ops=16, size=8),
            "codebook": compress_graph(zoo.resnet_like(16), 16)}


def _samples(probe: _Probe) -> list[_Sample]:
    """The fit models, emitted and linked."""
    board, dsp = get_board(PROBE_BOARD), cortex_m_core(probe.target).dsp
    samples = []
    for name, graph in fit_graphs().items():
        layers, pool = emit_layers(graph, _plan(graph, probe.target), dsp)
        samples.append(_Sample(graph, layers, pool, probe.build(f"fit-{name}", graph, board)))
    return samples


def _undercounts(samples: list[_Sample], code: TargetCode, target: str) -> np.ndarray:
    """Each fit model's linked flash minus its estimate from `code`."""
    return np.array([s.linked.flash_bytes - estimate_flash(s.graph, s.layers, s.pool, target,
                                                           code=code).total for s in samples])


def _run_fit(samples: list[_Sample], code: TargetCode, target: str) -> RunFit:
    """The run function's bytes, fitted on (1, calls, arguments).

    Least squares of what the estimate without a run function misses of each fit model's
    firmware.
    """
    rows = np.array([(1, *kernel_calls(s.layers)) for s in samples], float)
    missed = _undercounts(samples, replace(code, run=RunFit(0, 0, 0)), target)
    base, call, argument = np.linalg.lstsq(rows, missed, rcond=None)[0]
    return RunFit(round(float(base), 2), round(float(call), 2), round(float(argument), 2))


def _slack(samples: list[_Sample], code: TargetCode, target: str) -> int:
    """The largest undercount of a fit model's firmware (16-byte steps) + ALIGNMENT_ALLOWANCE."""
    under = int(_undercounts(samples, code, target).max())
    return -(-max(under, 0) // 16) * 16 + ALIGNMENT_ALLOWANCE


def compiler_version() -> str:
    """The first line of `arm-none-eabi-gcc --version` (what kernel_code.toml was measured with)."""
    result = subprocess.run([find_cross_compiler(), "--version"], capture_output=True, text=True,
                            check=True, timeout=BUILD_TIMEOUT_S)
    return result.stdout.splitlines()[0]


def measure_target(target: str, directory: Path) -> TargetCode:
    """The flash facts of Cortex-M `target`, measured in the empty directory `directory`."""
    probe = _base_probe(directory / "base", target)
    kernels, support = _kernel_codes(probe)
    samples = _samples(probe)
    external, per_chunk = _external(probe)
    code = TargetCode(_runtimes(probe), _per_tensor(probe), 0, RunFit(0, 0, 0),
                      _struct_sizes(probe), kernels, support, external, per_chunk, _spill(probe))
    code = replace(code, run=_run_fit(samples, code, target))
    return replace(code, slack=_slack(samples, code, target))
