"""Data: annotation formats, datasets, crops, transforms and the crop cache."""
