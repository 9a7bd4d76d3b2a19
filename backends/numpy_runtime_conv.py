"""NumPy kernels for convolution, pooling and resampling (numpy its only import)."""
import numpy as np
