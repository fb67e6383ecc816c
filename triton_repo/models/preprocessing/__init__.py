"""Python-backend model code copied into generated repositories (a package only so wheels ship it)."""
