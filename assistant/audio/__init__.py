"""Audio in and out: capture, playback, WAV files, resampling, voice activity."""
