"""The on-device loop: the local trainer that fine-tunes the champion on harvested patches when the
device allows it (local_trainer), and the measured end-to-end loop (loop)."""
