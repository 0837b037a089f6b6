"""Print the pip arguments that pick torch's CPU wheels, where that matters and is possible.

On Linux, PyPI's torch wheel pulls several GB of CUDA libraries; PyTorch's CPU index has a
``+cpu`` build of the same version (PEP 440 orders ``2.13.0+cpu`` above ``2.13.0``, so pip takes
it when the index is an extra one). macOS and Windows wheels on PyPI are already CPU/MPS builds.
Prints nothing when not on Linux or when the index cannot be reached within 3 seconds (pip then
installs torch from PyPI or from a locally configured index). Standard library only: runs before
the virtual environment exists.
"""

import platform
import sys
import urllib.request

URL = "https://download.pytorch.org/whl/cpu"

if __name__ == "__main__":
    if platform.system() == "Linux":
        try:
            urllib.request.urlopen(URL + "/torch/", timeout=3).close()
        except Exception:
            sys.exit(0)
        print(f"--extra-index-url {URL}")
