"""Creates apps in the ECS model (which passes everything it does not model on to moto), and
prints their ids as JSON.

Usage: model_fixture.py ENDPOINT SPEC_JSON
SPEC_JSON: {"prefix": "...", "services": [{"app": "a1", "controller": "EXTERNAL"|"ECS",
            "desired": 2}, ...]}
Only ever talks to ENDPOINT (the model on 127.0.0.1), with fake credentials.

Every app shares one ECR repository holding the tags v1 (live), good, crash, sick and late,
each a distinct image. Task definitions have an essential `app` container with a container
health check and a non-essential log router without one. EXTERNAL services get a load
balancer, two target groups and a listener forwarding to the first, and a live task set on it;
ECS services get the deployment circuit breaker with rollback.
"""
import json
import sys

import boto3

endpoint, spec = sys.argv[1], json.loads(sys.argv[2])
assert endpoint.startswith("http://127.0.0.1:"), "the model must run on loopback"
prefix = spec["prefix"]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.client("ec2", **kw)
ecs = boto3.client("ecs", **kw)
elb = boto3.client("elbv2", **kw)
ecr = boto3.client("ecr", **kw)
logs = boto3.client("logs", **kw)

subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
sgs = [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]][:1]
network = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": sgs}}

repo = f"{prefix}-app"
ecr.create_repository(repositoryName=repo)
digests = {}
for i, tag in enumerate(["v1", "good", "crash", "sick", "late"]):
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": 1000 + i, "digest": "sha256:" + f"{i:x}" * 64},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 5000 + i, "digest": "sha256:" + f"{i + 5:x}" * 64}],
    })
    out = ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
    digests[tag] = out["image"]["imageId"]["imageDigest"]
repo_uri = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["repositoryUri"]

cluster = f"{prefix}-cluster"
ecs.create_cluster(clusterName=cluster)
log_group = f"/ecs/{prefix}"
logs.create_log_group(logGroupName=log_group)

apps = {}
for svc in spec["services"]:
    name = f"{prefix}-{svc['app']}"
    td = ecs.register_task_definition(
        family=name, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512",
        containerDefinitions=[
            {"name": "app", "image": f"{repo_uri}:v1", "essential": True,
             "portMappings": [{"containerPort": 8080}],
             "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"],
                             "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 10},
             "logConfiguration": {"logDriver": "awslogs", "options": {
                 "awslogs-group": log_group, "awslogs-region": "us-east-1",
                 "awslogs-stream-prefix": name}}},
            {"name": "log-router", "essential": False,
             "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable"},
        ])["taskDefinition"]["taskDefinitionArn"]
    out = {"service": name, "task_definition": td}
    if svc["controller"] == "EXTERNAL":
        lb = elb.create_load_balancer(Name=name[-32:], Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
        tgs = [elb.create_target_group(Name=f"{c}-{name}"[:32], Protocol="HTTP", Port=8080,
                                       VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
               for c in ("b", "g")]
        listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[
            {"Type": "forward", "TargetGroupArn": tgs[0]}])["Listeners"][0]["ListenerArn"]
        ecs.create_service(cluster=cluster, serviceName=name, desiredCount=svc["desired"],
                           deploymentController={"type": "EXTERNAL"})
        live = ecs.create_task_set(cluster=cluster, service=name, taskDefinition=td,
                                   networkConfiguration=network, launchType="FARGATE",
                                   loadBalancers=[{"targetGroupArn": tgs[0], "containerName": "app",
                                                   "containerPort": 8080}],
                                   scale={"value": 100, "unit": "PERCENT"})["taskSet"]["taskSetArn"]
        ecs.update_service_primary_task_set(cluster=cluster, service=name, primaryTaskSet=live)
        out.update(listener=listener, target_groups=tgs, live_task_set=live)
    else:
        ecs.create_service(cluster=cluster, serviceName=name, desiredCount=svc["desired"],
                           taskDefinition=td, launchType="FARGATE", networkConfiguration=network,
                           deploymentConfiguration={
                               "maximumPercent": 200, "minimumHealthyPercent": 100,
                               "deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    apps[svc["app"]] = out

print(json.dumps({
    "repository": repo, "repository_uri": repo_uri, "cluster": cluster, "digests": digests,
    "subnets": subnets, "security_groups": sgs, "apps": apps,
}))
