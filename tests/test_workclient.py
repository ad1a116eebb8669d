"""The work-protocol client against a real node: typed answers, refusal codes, failover."""

from __future__ import annotations

import secrets

import pytest

from gonka_cli import protocol as p
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import NodeUnreachable, RequestRefused
from gonka_cli.workclient import WorkClient, WorkRefused, commits_closed, is_retryable
from tests.conftest import StartNode, dead_url, node_url
from tests.miner.helpers import mining_network
from tests.node.network_helpers import fund_collateral, wait_locked


def new_key() -> PrivateKey:
    return PrivateKey(secrets.token_bytes(32))


def test_answers_are_protocol_messages(start_node: StartNode) -> None:
    node = start_node(network=mining_network())
    client = WorkClient(node_url(node), new_key())
    epoch = client.epoch()
    assert isinstance(epoch, p.EpochCurrent)
    assert epoch.poc.model == "gonka-tiny"
    fund_collateral(node_url(node), client.address)
    registration = client.register(["gonka-tiny"], [{"id": "cpu"}])
    assert registration == p.Registration(
        client.address,
        ("gonka-tiny",),
        1,
        registration.registered_height,
        client.node_address(),
        mining_network().collateral_ngonka,
        registration.collateral_tx,
    )
    assert registration.collateral_tx
    assert client.stake().collateral_ngonka == mining_network().collateral_ngonka
    work = client.work(wait_s=0)
    assert isinstance(work, p.WorkBatch) and work.items == ()


def test_a_refusal_carries_its_code_and_the_nodes_words(start_node: StartNode) -> None:
    node = start_node(network=mining_network())
    client = WorkClient(node_url(node), new_key())
    with pytest.raises(WorkRefused) as caught:
        client.work(wait_s=0)  # not registered yet
    refusal = caught.value
    assert isinstance(refusal, RequestRefused) and isinstance(refusal, p.Refusal)
    assert (refusal.status, refusal.code) == (403, p.ErrorCode.NOT_REGISTERED)
    assert client.address in refusal.reason
    assert str(refusal).startswith("the node refused GET /v1/work (403): ")
    assert not is_retryable(refusal)


def test_a_commit_outside_the_generate_phase_is_closed(start_node: StartNode) -> None:
    # A generate phase of one block at the start of a long epoch: over almost at once.
    node = start_node(
        network=mining_network(epoch_blocks=400, poc_generate_blocks=1, poc_validate_blocks=1)
    )
    client = WorkClient(node_url(node), new_key())
    fund_collateral(node_url(node), client.address)
    wait_locked(node_url(node), client.register(["gonka-tiny"]).to_dict())
    epoch = client.epoch()
    assert epoch.phase != "generate"
    with pytest.raises(WorkRefused) as caught:
        client.commit(epoch.epoch, epoch.poc.model, 10, "ab" * 32)
    assert caught.value.status == 409
    assert commits_closed(caught.value), caught.value.code


def test_the_client_fails_over_to_the_next_node(start_node: StartNode) -> None:
    node = start_node(network=mining_network())
    dead = dead_url()
    client = WorkClient([dead, node_url(node)], new_key())
    assert client.epoch().height >= 0  # the dead node is skipped
    assert client.url == node_url(node)
    fund_collateral(node_url(node), client.address)
    assert client.register(["gonka-tiny"]).address == client.address


def test_no_node_answering_names_each_and_the_hint() -> None:
    first, second = dead_url(), dead_url()
    client = WorkClient([first, second], hint="start one")
    with pytest.raises(NodeUnreachable) as caught:
        client.epoch()
    message = str(caught.value)
    assert first in message and second in message and message.endswith("start one")
