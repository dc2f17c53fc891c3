"""What-if replays of the anti-disturbance caps on a world: `recsys caps simulate` and the studio page."""
