"""The local demo page (``contrafuse demo``, extra ``demo``): upload or pick a pair, fuse it with
one or several models, compare, score and download.

:mod:`.runner` runs a request through the fusing session and the metrics (no Gradio);
:mod:`.app` builds the Gradio page around it and serves it offline. Gradio is imported only by
:mod:`.app`, so ``import contrafuse.demo`` works without the extra.
"""

DEFAULT_HOST = "127.0.0.1"  # this machine only
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 50  # per uploaded file
