"""Recommendations for a new user from a few ratings, with a trained cold-start checkpoint.

Three lines::

    from metamap.recommend import Recommender
    rec = Recommender.from_checkpoint("runs/movielens-melu/best.pt")
    rec.recommend({50: 5, 181: 4, 100: 2}, top=10)   # movie id -> stars
    rec.recommend({50: 5}, top=10, user={"gender": "F", "age": 25})  # and demographics

``metamap recommend CHECKPOINT --ratings my_ratings.csv --top 10`` does the same from a CSV file
of ``item_id,rating`` lines (``--user KEY=VALUE`` for each demographic given).
"""

from metamap.recommend.product import (
    USER_KEYS,
    Recommendation,
    Recommender,
    User,
    read_ratings_csv,
)

__all__ = ["USER_KEYS", "Recommendation", "Recommender", "User", "read_ratings_csv"]
