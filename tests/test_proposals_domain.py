"""The proposal aggregate's rules that a running system only shows by luck of timing:
a conversion awaiting the catalog's answer, and answers that arrive twice or late."""

from __future__ import annotations

from datetime import date

import pytest

from services.proposals.domain import Proposal
from shared.domain import Refused
from shared.workdays import WorkingCalendar

TODAY = date(2026, 9, 24)


def filed() -> Proposal:
    p = Proposal.submit(title="提案", content="内容", kind="cppcc_proposal", proposers=[{"name": "李委员"}],
                        collective=None, opinion_id=None, opinion=None, today=TODAY)
    p.review_at_meeting("filed", None, "提案委员会", None, False, False, TODAY)
    return p


def test_a_conversion_waits_for_the_catalog_and_its_answers_count_once() -> None:
    p = filed()
    assert p.convert("县政协", "other", None, TODAY) == 1
    with pytest.raises(Refused) as pending:
        p.convert("县政协", "other", None, TODAY)
    assert pending.value.rule == "conversion_pending"
    assert p.conversion_refused(1, "string_too_long", "title too long", TODAY)
    assert not p.conversion_refused(1, "string_too_long", "title too long", TODAY), "a redelivery changes nothing"
    assert p.convert("县政协", "other", "短标题", TODAY) == 2
    assert not p.conversion_refused(1, "x", "a stale answer", TODAY), "an answer to an earlier attempt is ignored"
    assert p.link_topic("topic-1", TODAY)
    assert not p.link_topic("topic-1", TODAY)
    assert (p.conversion["status"], p.linked_topic) == ("topic_created", "topic-1")
    with pytest.raises(Refused) as twice:
        p.convert("县政协", "other", None, TODAY)
    assert twice.value.rule == "already_converted"


def test_handling_reopens_once_and_a_missed_reply_is_reported_once() -> None:
    calendar = WorkingCalendar.load(None)
    p = filed()
    p.assign("县住建局", [], None, None, None, "交办会", TODAY, calendar, 10)
    assert p.record_missed(date(2026, 10, 15), calendar, "scheduler") == []
    assert p.record_missed(date(2026, 10, 16), calendar, "scheduler") == ["reply"]
    assert p.record_missed(date(2026, 10, 19), calendar, "scheduler") == []
    p.consult("joint", TODAY, "同意", "县住建局", TODAY)
    p.reply("C", "暂不能解决", "县住建局", date(2026, 10, 16))
    assert p.current["reply"]["on_time"] is False
    p.rate("unsatisfied", "再议", "李委员", date(2026, 10, 16), calendar, 20)
    assert (p.status, p.round) == ("handling", 2)
    p.consult("face_to_face", date(2026, 10, 16), "同意", "县住建局", date(2026, 10, 16))
    p.reply("B", "列入计划", "县住建局", date(2026, 10, 16))
    p.rate("unsatisfied", "仍不满意", "李委员", date(2026, 10, 16), calendar, 20)
    assert (p.status, p.round, len(p.rounds)) == ("closed", 2, 2)
    with pytest.raises(Refused) as closed:
        p.rate("satisfied", None, "李委员", date(2026, 10, 16), calendar, 20)
    assert closed.value.rule == "not_replied"


def test_a_topic_made_with_the_proposals_id_by_hand_links_it_too_and_only_proposers_rate() -> None:
    p = filed()
    assert p.link_topic("topic-9", TODAY)
    assert (p.conversion["attempt"], p.linked_topic) == (0, "topic-9")
    with pytest.raises(Refused) as converted:
        p.convert("县政协", "other", None, TODAY)
    assert converted.value.rule == "already_converted"
    calendar = WorkingCalendar.load(None)
    p.assign("县住建局", [], None, None, None, "交办会", TODAY, calendar, 10)
    p.consult("joint", TODAY, "同意", "县住建局", TODAY)
    p.reply("A", "已解决", "县住建局", TODAY)
    with pytest.raises(Refused) as stranger:
        p.rate("satisfied", None, "路人", TODAY, calendar, 20)
    assert stranger.value.rule == "not_a_proposer"
    p.rate("satisfied", None, "李委员", TODAY, calendar, 20)
    assert p.status == "closed"
