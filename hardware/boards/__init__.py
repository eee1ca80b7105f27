# One small file per board: pin numbers and polarity only.
