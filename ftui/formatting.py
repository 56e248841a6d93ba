"""How ftui writes numbers for people, the same in the CLI and the workbench."""


def param_count(n: int) -> str:
    """11.18M, 9.4k, 128."""
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}k" if n >= 1_000 else str(n)
