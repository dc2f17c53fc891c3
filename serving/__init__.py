"""The ranking API: published model + Redis caps -> ranked, capped pushes for the push scheduler."""
