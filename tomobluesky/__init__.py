"""tomobluesky: acquisition-coupled tomography for Bluesky beamlines.

Importing the package stays light: no CuPy, Kafka or Tiled is loaded here.
"""

__version__ = "0.1.0"
