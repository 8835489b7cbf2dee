"""divtune: post-train LLMs for output diversity (GAPO, DARLING) and prove them before they serve."""

__version__ = "0.1.0"
