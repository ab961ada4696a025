"""Human review of borderline photos: ``ModerateOperator`` decides, ``PhotoReviewOperator`` asks an operator.

- ``ModerateOperator`` is the moderation stage's ``ModelJobOperator`` with the verdict applied
  (``include/review.py``): a flagged photo fails at once; a photo outside the review band skips the
  review task from inside the moderation task (Airflow's SkipMixin), so the usual path pays for no
  extra task process; only a borderline photo leaves the review task to run.
- ``PhotoReviewOperator`` is Airflow's ``ApprovalOperator`` (standard provider): it parks the task in
  ``awaiting_input`` (no worker, no triggerer) and the request appears in the UI's "Required
  actions". Approve: the pipeline goes on. Reject, or no answer within ``review_timeout``: the task
  fails with the user's sentence ``REJECTED_BY_REVIEW`` (``AirflowFailException``: no retry asks
  again; retries are for a failure to reach Airflow's API while asking), and
  the DAG's ``refund_token`` teardown fails the generation and gives its token back once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.exceptions import HITLRejectException, HITLTriggerEventError
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException

from bitbuddies_airflow.operators import SkippingModelJobOperator
from bitbuddies_airflow.runs import generation_id
from include.review import NSFW_REJECTED, REJECTED_BY_REVIEW, Verdict, moderation_verdict, review_body, review_subject
from include.settings import get_settings


class ModerateOperator(SkippingModelJobOperator):
    """The moderation stage: a flagged photo fails, a borderline one leaves ``review_task_id`` to run."""

    def __init__(self, *, review_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.review_task_id = review_task_id

    def _fetch(self, client, job, context) -> dict[str, Any]:
        result = super()._fetch(client, job, context)
        verdict = moderation_verdict(result, get_settings().review_band)
        self.log.info("Moderation score %.3f: %s", float(result.get("score") or 0.0), verdict.value)
        if verdict is Verdict.REJECT:
            raise AirflowFailException(NSFW_REJECTED)
        if verdict is Verdict.PASS:
            self._skip_with_result(context, result, self.review_task_id)
        return result


class PhotoReviewOperator(ApprovalOperator):
    """An operator approves or rejects a borderline photo; reject or no answer fails the generation."""

    template_fields = (*ApprovalOperator.template_fields, "photo_url", "prompt")
    ui_color = "#ffe08a"

    def __init__(self, *, moderate_task_id: str, photo_url: str, prompt: str, **kwargs: Any) -> None:
        kwargs.setdefault("response_timeout", timedelta(seconds=get_settings().review_timeout))
        kwargs.setdefault(
            "doc_md",
            "A photo the safety check scored inside the review band waits here for an operator under "
            "**Required actions**: Approve goes on; Reject, or no answer within `review_timeout`, fails "
            "the generation with the user's message and `refund_token` gives the token back. Every "
            "other photo skips this task (`moderate` skips it).",
        )
        super().__init__(subject="Borderline photo", fail_on_reject=True, **kwargs)
        self.moderate_task_id = moderate_task_id
        self.photo_url = photo_url
        self.prompt = prompt

    def execute(self, context):
        moderation = context["ti"].xcom_pull(task_ids=self.moderate_task_id) or {}
        score = float(moderation.get("score") or 0.0)
        self.subject = review_subject(generation_id(context) or context["ti"].run_id, score)
        self.body = review_body(score, get_settings().review_band, self.photo_url, self.prompt)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        try:
            return super().execute_complete(context, event)
        except (HITLRejectException, HITLTriggerEventError) as exc:  # rejected, or the response timed out
            self.log.info("Review did not approve the photo: %s", exc)
            raise AirflowFailException(REJECTED_BY_REVIEW) from exc
