"""The science of paths between models: interpolation, barriers and verdicts, barrier matrices and planes,
clustering, calibration and sharpness, diagnostics of trained copies."""
