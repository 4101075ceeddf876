"""The gRPC face of the recommendations: wire message in, domain call, wire message out."""

from __future__ import annotations

import grpc

from emporium.recommendations import domain, messages
from emporium.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc

SERVICE_NAME = recommendations_pb2.DESCRIPTOR.services_by_name["RecommendationService"].full_name


class RecommendationServicer(recommendations_pb2_grpc.RecommendationServiceServicer):
    def __init__(self, recommendations: domain.Recommendations) -> None:
        self._recommendations = recommendations

    async def ListRecommendations(
        self,
        request: recommendations_pb2.ListRecommendationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> recommendations_pb2.ListRecommendationsResponse:
        found = await self._recommendations.list_recommendations(
            request.product_id, request.max_results
        )
        return recommendations_pb2.ListRecommendationsResponse(
            recommendations=[messages.recommendation_to_wire(r) for r in found]
        )
