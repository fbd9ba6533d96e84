"""A PPO ABR agent (issue 30, item 4): stable-baselines3's PPO on a gymnasium environment that
steps the project's own Rust chunk simulator through its Python bindings (`nerveabr_py`), never a
Python copy of it. It picks each chunk's (rung, enhancement level) with the viewer's preference
weight as an input, is exported to ONNX for the `nerveabr` element (`policy=ppo`), and is judged
leave-one-family-out against the `nerve` planner and the baselines on the same traces."""
