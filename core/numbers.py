"""Numbers that clients write into URLs and headers (ids, event numbers)."""

BIGINT_MAX = 2**63 - 1  # what a PostgreSQL bigint (ids, event numbers) holds


def bigint(raw: str) -> int | None:
    """A whole number from 0 to BIGINT_MAX in ASCII digits (`str.isdigit` also takes `²`,
    which `int` refuses, and `int` takes `٣`); None if `raw` is not one."""
    if not (raw.isascii() and raw.isdecimal()) or len(raw) > 19:
        return None
    value = int(raw)
    return value if value <= BIGINT_MAX else None
