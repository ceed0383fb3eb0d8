"""Cost of the encrypted external image on QEMU: instructions per byte to verify and decrypt.

Model: mobilenet_v2_like(32, 0.35, 10) (mcuflow.ir.zoo), every step with constants reading them
from the external image, as tests/targets/test_cortexm_external.py plans it. Per core
(the Cortex-M cores QEMU's MPS2 machines run, with their DSP kernels where the core has the
extension): the same plan built
with a plain and with an encrypted image, both bit-exact against mcuflow's reference on two
random inputs; the difference of the instructions of one inference, divided by the external
bytes one inference reads, is the cost per byte of AES-CMAC verification plus AES-128-CTR
decryption (the key derivation of each inference included, a few thousand instructions). The
figures are kept in mcuflow.hw.external_crypto.

Run: .venv/bin/python bench/external_crypto.py [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from mcuflow.codegen.external import external_layout
from mcuflow.codegen.render import emit_layers
from mcuflow.hw.external_crypto import COSTS
from mcuflow.ir import zoo
from mcuflow.memory.plan import ExternalWeights, Plan
from mcuflow.memory.planner import plan_memory
from mcuflow.toolchain.arm import cortex_m_core
from mcuflow.toolchain.qemu import verify_cortexm

BOARDS = {"cortex-m4": "nucleo-f429zi", "cortex-m0": "rp2040", "cortex-m0plus": "rp2040",
          "cortex-m3": "nucleo-f207zg", "cortex-m7": "nucleo-f767zi", "cortex-m33": "nucleo-f767zi"}
"""The board sizing each core's build (the M33 has none of its own: the F767ZI's memories)."""
RUNS = 2


def external_plan(target: str) -> Plan:
    """The benchmark model planned for `target`, every step with constants read externally."""
    graph = zoo.mobilenet_v2_like(32, 0.35, 10)
    plan = plan_memory(graph, 0.2, dsp=cortex_m_core(target).dsp)
    steps = frozenset(i for i, step in enumerate(plan.steps)
                      if any(plan.graph.tensors[n].is_constant
                             for n in plan.graph.operators[step.op_index].inputs))
    return dataclasses.replace(plan, external=ExternalWeights("sd_card", steps))


def measure(target: str) -> dict[str, float | int | str | bool]:
    """Instructions per inference plain and encrypted, and per external byte read."""
    plan = external_plan(target)
    encrypted = dataclasses.replace(plan, external=dataclasses.replace(plan.external,
                                                                       encrypted=True))
    layout = external_layout(plan, *emit_layers(plan.graph, plan, cortex_m_core(target).dsp))
    assert layout is not None
    plain = verify_cortexm(plan.graph, plan, target, BOARDS[target], runs=RUNS, seed=1)
    sealed = verify_cortexm(plan.graph, encrypted, target, BOARDS[target], runs=RUNS, seed=1,
                            external_key=os.urandom(16))
    extra = sealed.instructions - plain.instructions
    return {"target": target, "external_bytes": layout.external_bytes,
            "chunks": len(layout.chunks), "plain_instructions": plain.instructions,
            "encrypted_instructions": sealed.instructions,
            "bit_exact": plain.bit_exact and sealed.bit_exact,
            "instructions_per_byte": round(extra / layout.external_bytes, 1),
            "catalogue": _catalogue(target)}


def _catalogue(target: str) -> float | None:
    """The catalogue's figure for `target`, None before it is recorded."""
    return COSTS[target].instructions_per_byte if target in COSTS else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    rows = [measure(target) for target in BOARDS]
    if parser.parse_args().json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['target']}: {row['external_bytes']:,} B in {row['chunks']} chunks, "
              f"{row['plain_instructions']:,} -> {row['encrypted_instructions']:,} instructions "
              f"per inference (bit-exact: {row['bit_exact']}): "
              f"{row['instructions_per_byte']} instructions per byte (catalogue "
              f"{row['catalogue']})")


if __name__ == "__main__":
    main()
