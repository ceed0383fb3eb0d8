"""C code generation: a self-contained C99 project per planned model."""

from mcuflow.codegen.project import GeneratedProject, generate_project

__all__ = ["GeneratedProject", "generate_project"]
