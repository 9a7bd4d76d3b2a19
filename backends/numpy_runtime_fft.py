"""NumPy kernels for the Fourier-transform ops (numpy only; copied into generated modules).

The transforms run in float64 and round once to the input's dtype. numpy.fft's default
normalisation ("backward"): none forward, 1/n inverse.
"""
import numpy as np


def rfft_parts(x, axis, n=None):
    """numpy.fft.rfft along `axis` (length `n`: zero-padded or truncated), as its real and
    imaginary parts."""
    spectrum = np.fft.rfft(x.astype(np.float64), n=n, axis=axis)
    return spectrum.real.astype(x.dtype), spectrum.imag.astype(x.dtype)


def irfft_real(re, im, n, axis):
    """numpy.fft.irfft of re + i*im along `axis`, to `n` points."""
    spectrum = re.astype(np.float64) + 1j * im.astype(np.float64)
    return np.fft.irfft(spectrum, n=n, axis=axis).astype(re.dtype)
