"""Using a fitted run on new images: predict, similar stored images, export as one model."""
