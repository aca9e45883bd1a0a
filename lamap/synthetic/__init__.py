"""The offline Sentinel-1/Sentinel-2 world: landscape, physics, products, STAC."""
