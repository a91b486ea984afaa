def deepen(x: int) -> int:
    return x + 1
