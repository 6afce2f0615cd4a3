"""Live frames: camera and file sources (picamera2, OpenCV, images, the IMX500's on-sensor results) and the one loop that classifies them."""
