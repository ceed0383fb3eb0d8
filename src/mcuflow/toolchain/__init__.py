"""Host and Arm toolchains, QEMU."""
