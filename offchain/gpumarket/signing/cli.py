"""``gpumarket report ...``: inspect EIP-712 reports (digest, recover a signer)."""

from __future__ import annotations

import json
from typing import Any, TextIO

import click

from gpumarket.signing import eip712


def _domain_options(fn: Any) -> Any:
    options = [
        click.option("--chain-id", type=int, required=True, help="Chain id of the deployment."),
        click.option(
            "--contract", "contract", required=True, metavar="ADDR", help="Address of the verifying contract."
        ),
        click.option(
            "--type",
            "report_type",
            type=click.Choice(["job", "hardware"]),
            required=True,
            help="Which report struct the file holds.",
        ),
        click.option(
            "--file",
            "report_file",
            type=click.File("r"),
            required=True,
            help="Report as JSON (as gpumarket.signing.eip712.to_json writes it); '-' for stdin.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _load(chain_id: int, contract: str, report_type: str, report_file: TextIO) -> tuple[eip712.Domain, Any]:
    try:
        data = json.load(report_file)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--file") from None
    try:
        domain = eip712.Domain(chain_id=chain_id, verifying_contract=contract)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--chain-id/--contract") from None
    try:
        return domain, eip712.from_json(data, report_type)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--file") from None


def _emit(fields: dict[str, str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(fields, indent=2))
    else:
        width = max(len(k) for k in fields)
        for key, value in fields.items():
            click.echo(f"{key.ljust(width)}  {value}")


@click.group()
def report() -> None:
    """Inspect the EIP-712 reports the oracle committee signs."""


@report.command()
@_domain_options
def digest(chain_id: int, contract: str, report_type: str, report_file: TextIO, as_json: bool) -> None:
    """Print the EIP-712 digest of a report, with its struct hash and the domain separator."""
    domain, rep = _load(chain_id, contract, report_type, report_file)
    _emit(
        {
            "type": rep.TYPE_NAME,
            "domain_separator": "0x" + eip712.domain_separator(domain).hex(),
            "struct_hash": "0x" + eip712.struct_hash(rep).hex(),
            "digest": "0x" + eip712.digest(domain, rep).hex(),
        },
        as_json,
    )


@report.command()
@_domain_options
@click.option("--signature", required=True, metavar="0x..", help="65-byte signature r||s||v as hex.")
def recover(chain_id: int, contract: str, report_type: str, report_file: TextIO, as_json: bool, signature: str) -> None:
    """Print the address that signed a report."""
    domain, rep = _load(chain_id, contract, report_type, report_file)
    try:
        signer = eip712.recover(domain, rep, signature)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--signature") from None
    _emit({"signer": signer, "digest": "0x" + eip712.digest(domain, rep).hex()}, as_json)
