"""Progress bars live in lmc_core.progress (they are used below publish/, by training); this name stays for
the studies that import it here."""
from ..progress import PlainBar, bar, format_plain, plain  # noqa: F401
