"""placeholder"""
from geep_deploy.errors import BackendUnavailable


def require_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable("tensorrt | not installed. Try: pip install geep-deploy[tensorrt]") from None
    return trt
