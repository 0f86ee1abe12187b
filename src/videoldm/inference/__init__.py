"""From trained models to videos: sampling, the pipeline, long videos (prediction, interpolation, rollout),
upsampling, and the front end of the shipped models. Loads models through :mod:`videoldm.export` only."""
