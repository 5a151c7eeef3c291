"""The Hub Space of this metric: ``python app.py`` serves a Gradio widget over ``coverage_metric.py`` (the Space
installs gradio). Importing this file does nothing."""

from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget

if __name__ == "__main__":
    launch_gradio_widget(evaluate.load(str(Path(__file__).with_name("coverage_metric.py"))))
