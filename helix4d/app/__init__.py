"""`helix4d app`: a local web app (gradio) to turn a video into a 4D asset, look at it and download it.

    helix4d app --model MODEL_DIR            # then open http://127.0.0.1:7860

    from helix4d.app import launch
    launch(model="MODEL_DIR", port=7860)     # the same from Python

The UI needs the optional `app` extra (`pip install 'helix4d[app]'`); `run_job`, the generation behind the
Generate button, does not.
"""

from helix4d.app.job import JobResult, ModelHolder, find_examples, run_job
from helix4d.errors import BackendUnavailableError

_UI_NAMES = ("Helix4DApp", "launch")


def __getattr__(name: str):
    """Import the gradio UI on first use, so the rest of this package works without gradio."""
    if name not in _UI_NAMES:
        raise AttributeError(f"module 'helix4d.app' has no attribute {name!r}")
    try:
        from helix4d.app import ui
    except ModuleNotFoundError as exc:
        if exc.name != "gradio":
            raise
        raise BackendUnavailableError("the web app needs gradio: pip install 'helix4d[app]'") from None
    return getattr(ui, name)


__all__ = ["Helix4DApp", "JobResult", "ModelHolder", "find_examples", "launch", "run_job"]
