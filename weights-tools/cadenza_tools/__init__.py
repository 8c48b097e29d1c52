"""Python side of cadenza's weights tools: checkpoint readers, the safetensors writer,
and the PyTorch reference makers. See docs/weights.md."""

CONVERTER_VERSION = "0.2.0"


class ConvertError(Exception):
    """A checkpoint the converter refuses. The message names the file and the problem."""
