"""References between template entries, and those a regeneration would leave dangling (compile/references.py)."""

from __future__ import annotations

from typing import Any

from lokki_sam.compile.references import dangling, references

BEFORE: dict[str, Any] = {
    "Parameters": {"Stage": {"Type": "String"}, "OldParam": {"Type": "String"}},
    "Conditions": {
        "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        "OldCondition": {"Fn::Equals": [{"Ref": "OldParam"}, "x"]},
    },
    "Resources": {
        "KeptFunction": {"Type": "AWS::Serverless::Function", "Properties": {}},
        "GoneFunction": {"Type": "AWS::Serverless::Function", "Properties": {}},
        "GoneQueue": {"Type": "AWS::SQS::Queue"},
    },
}


def after(**user: Any) -> dict[str, Any]:
    """BEFORE without the entries a regeneration removed, plus the user's entries given."""
    template: dict[str, Any] = {
        "Parameters": {"Stage": {"Type": "String"}},
        "Conditions": {"IsProd": BEFORE["Conditions"]["IsProd"]},
        "Resources": {"KeptFunction": BEFORE["Resources"]["KeptFunction"]},
    }
    for section, entries in user.items():
        template.setdefault(section, {}).update(entries)
    return template


def found(template: dict[str, Any]) -> list[str]:
    return sorted(f"{ref.describe()} -> {target}" for ref, target in dangling(BEFORE, template))


def test_every_kind_of_reference_to_what_goes_is_found() -> None:
    template = after(
        Resources={
            "Alarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "DependsOn": "GoneQueue",
                "Condition": "OldCondition",
                "Properties": {
                    "Dimensions": [{"Value": {"Ref": "GoneFunction"}}],
                    "AlarmActions": [{"Fn::If": ["OldCondition", {"Fn::GetAtt": "GoneQueue.Arn"}, "none"]}],
                    "AlarmDescription": {"Fn::Sub": "role ${GoneFunctionRole.Arn} of ${GoneFunction}"},
                    "Namespace": {"Fn::Sub": ["${Local} ${OldParam}", {"Local": {"Ref": "Stage"}}]},
                },
            },
            "Link": {
                "Type": "AWS::Serverless::Connector",
                "Properties": {"Source": {"Id": "KeptFunction"}, "Destination": [{"Id": "GoneQueue"}]},
            },
        },
        Outputs={"Version": {"Value": {"Ref": "GoneFunction.Version"}, "Condition": "OldCondition"}},
        Conditions={"Both": {"Fn::And": [{"Condition": "IsProd"}, {"Condition": "OldCondition"}]}},
    )
    assert found(template) == [
        "Conditions.Both.Fn::And[1] (Condition OldCondition) -> Conditions.OldCondition",
        "Outputs.Version.Condition (Condition OldCondition) -> Conditions.OldCondition",
        "Outputs.Version.Value (Ref GoneFunction) -> Resources.GoneFunction",
        "Resources.Alarm.Condition (Condition OldCondition) -> Conditions.OldCondition",
        "Resources.Alarm.DependsOn (DependsOn GoneQueue) -> Resources.GoneQueue",
        "Resources.Alarm.Properties.AlarmActions[0] (Fn::If OldCondition) -> Conditions.OldCondition",
        "Resources.Alarm.Properties.AlarmActions[0].Fn::If[1] (Fn::GetAtt GoneQueue) -> Resources.GoneQueue",
        "Resources.Alarm.Properties.AlarmDescription (Fn::Sub GoneFunction) -> Resources.GoneFunction",
        "Resources.Alarm.Properties.AlarmDescription (Fn::Sub GoneFunctionRole) -> Resources.GoneFunction",
        "Resources.Alarm.Properties.Dimensions[0].Value (Ref GoneFunction) -> Resources.GoneFunction",
        "Resources.Alarm.Properties.Namespace (Fn::Sub OldParam) -> Parameters.OldParam",
        "Resources.Link.Properties.Destination.Id (Connector GoneQueue) -> Resources.GoneQueue",
    ]


def test_what_is_not_a_reference_to_what_goes_is_not_reported() -> None:
    template = after(
        Resources={
            "Topic": {
                "Type": "AWS::SNS::Topic",
                "Properties": {
                    "TopicName": {"Fn::Sub": "${AWS::StackName}-${!GoneFunction}-${Stage}"},  # pseudo, escape, kept
                    "DisplayName": {"Fn::Sub": ["${GoneQueue}", {"GoneQueue": "a local variable"}]},
                    "Tags": [{"Key": "Ref", "Value": "GoneFunction"}],  # plain strings, not an intrinsic
                },
                "Metadata": {"Note": {"Ref": "GoneFunction"}},  # CloudFormation does not resolve Metadata
            },
            "Mine": {"Type": "AWS::SQS::Queue", "DependsOn": ["KeptFunction", "NeverDefined"]},  # already dangling
        },
    )
    assert found(template) == []


def test_references_lists_every_one_once() -> None:
    template = after(Outputs={"A": {"Value": {"Fn::GetAtt": ["KeptFunction", "Arn"]}}})
    assert [(r.referrer, r.target, r.kind) for r in references(template)] == [
        ("Outputs.A", "KeptFunction", "Fn::GetAtt"),
        ("Conditions.IsProd", "Stage", "Ref"),
    ]
