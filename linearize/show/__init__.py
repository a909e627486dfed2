"""Display: LaTeX for programs and derivations, and the SymPy bridge. Depends on the IR only."""
