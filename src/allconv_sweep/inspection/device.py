"""Where the inspection tools (evaluate, visualize) run."""

from allconv_sweep.errors import UserError


def device_from(name: str):
    """device=auto | cpu | cuda | cuda:<index> as a torch.device (auto: a GPU if any), or a one-line error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UserError(f"device={name!r}; valid: auto, cpu, cuda, cuda:<index>")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but no GPU is visible; valid here: auto, cpu")
    return dev
