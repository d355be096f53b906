"""anyprobe's built-in probes and reporters, registered through the ``anyprobe``
entry-point group like any third-party plugin."""
