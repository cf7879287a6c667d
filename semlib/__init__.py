"""semlib: semantic-aware variable-rate learned image compression.

One module per idea of the method (see docs/METHOD.md of the project):

- :mod:`semlib.importance`  Grad-CAM semantic importance maps            (§1)
- :mod:`semlib.allocation`  8x8 block levels V_i, L_i, T_i and gamma maps (§2)
- :mod:`semlib.metrics`     PSNR, SSIM, MS-SSIM, SI-SSIM, bpp, BD-rate    (§3, §9)
- :mod:`semlib.models`      gamma-conditioned hierarchical ResNet VAE    (§4, §5)
- :mod:`semlib.codec`       the .semc file: encode / decode               (§4, §9)
- :mod:`semlib.train`       the training loop and loss R + gamma*D        (§6)
- :mod:`semlib.data`        finding, loading and downloading images
"""

import warnings

from semlib.errors import CheckpointError, FormatError, ImageError, SemlibError

# compressai 1.2.8 decorates functions with torch.jit.script, which torch >= 2.10 flags as
# deprecated at import time; the message says nothing actionable to semlib's users.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)

__version__ = "0.1.0"
__all__ = ["SemlibError", "FormatError", "ImageError", "CheckpointError", "__version__"]
