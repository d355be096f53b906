"""anyprobe-example: a memcached probe and a TAP reporter, as a third party writes them."""
