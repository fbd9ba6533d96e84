import sys
from pathlib import Path

# The package's src layout: importable without an install too (the .venv has an editable one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
