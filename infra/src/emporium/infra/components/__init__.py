"""One ComponentResource per concern; ``platform.EmporiumPlatform`` composes them."""
