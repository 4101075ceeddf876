"""Translation between the recommendations' domain objects and the protobuf wire messages.

One place for it, shared by the gRPC servicer and the Kafka handlers, so the
domain never sees a protobuf class.
"""

from __future__ import annotations

from emporium.events.v1 import order_events_pb2
from emporium.recommendations import domain
from emporium.recommendations.v1 import recommendations_pb2


def recommendation_to_wire(
    recommendation: domain.Recommendation,
) -> recommendations_pb2.Recommendation:
    return recommendations_pb2.Recommendation(
        product_id=recommendation.product_id, score=recommendation.score
    )


def placed_order_from_wire(message: order_events_pb2.OrderPlaced) -> domain.PlacedOrder:
    return domain.PlacedOrder(
        order_id=message.order_id,
        product_ids=tuple(item.product_id for item in message.items),
    )
