def late(x: int) -> str:
    return f"{x:>{x % 5 + 2}}|{x!r:<4}|"  # format specs: 3.12.1 parses them with empty parts
