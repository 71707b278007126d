"""Creates an app's AWS resources in a moto server, and prints their ids as JSON.
(A copy of tapitalee-aws/tests/support/fixture.py: the CLI's tests do not depend on another
crate's test code. The worker service is scaled to zero: moto starts no tasks, so a
deployment of it makes every API call of a real one with no instance to wait for.)

Usage: fixture.py ENDPOINT PREFIX
Only ever talks to ENDPOINT (a moto server on 127.0.0.1), with fake credentials.
"""
import json
import sys
import time

import boto3

endpoint, prefix = sys.argv[1], sys.argv[2]
assert endpoint.startswith("http://127.0.0.1:"), "moto must run on loopback"
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

# ECR: two images, v1 then v2 (with two tags).
repo = f"{prefix}-app"
ecr.create_repository(repositoryName=repo)
for i, tags in enumerate([["v1"], ["v2", "latest"]]):
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": 1000 + i, "digest": "sha256:" + f"{i:x}" * 64},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 5000 + i, "digest": "sha256:" + f"{i + 5:x}" * 64}],
    })
    for tag in tags:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
    time.sleep(1.1)  # distinct push times
repo_uri = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["repositoryUri"]

cluster = f"{prefix}-cluster"
ecs.create_cluster(clusterName=cluster)
log_group = f"/ecs/{prefix}"
logs.create_log_group(logGroupName=log_group)


def task_def(family, container):
    return ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512",
        tags=[{"key": "team", "value": "web"}],
        containerDefinitions=[{
            "name": container, "image": f"{repo_uri}:v1", "memory": 512, "essential": True,
            "portMappings": [{"containerPort": 8080}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": log_group, "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": family}},
        }])["taskDefinition"]["taskDefinitionArn"]


# The web process: EXTERNAL controller, a live task set on the blue target group.
web_td = task_def(f"{prefix}-web", "app")
lb = elb.create_load_balancer(Name=f"{prefix}-lb", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
tgs = [elb.create_target_group(Name=f"{prefix}-{c}", Protocol="HTTP", Port=8080, VpcId=vpc,
                               TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
       for c in ("blue", "green")]
listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[
    {"Type": "forward", "TargetGroupArn": tgs[0]}])["Listeners"][0]["ListenerArn"]
ecs.create_service(cluster=cluster, serviceName=f"{prefix}-web", desiredCount=4,
                   deploymentController={"type": "EXTERNAL"})
live = ecs.create_task_set(cluster=cluster, service=f"{prefix}-web", taskDefinition=web_td,
                           networkConfiguration=network, launchType="FARGATE",
                           loadBalancers=[{"targetGroupArn": tgs[0], "containerName": "app",
                                           "containerPort": 8080}],
                           scale={"value": 100, "unit": "PERCENT"})["taskSet"]["taskSetArn"]
ecs.update_service_primary_task_set(cluster=cluster, service=f"{prefix}-web", primaryTaskSet=live)

# The worker process: default ECS controller.
worker_td = task_def(f"{prefix}-worker", "worker")
ecs.create_service(cluster=cluster, serviceName=f"{prefix}-worker", desiredCount=2,
                   taskDefinition=worker_td, launchType="FARGATE", networkConfiguration=network)

ecs.update_service(cluster=cluster, service=f"{prefix}-worker", desiredCount=0)

# Logs of the web process, as awslogs names them: prefix/container/task-id.
stream = f"{prefix}-web/app/0123456789abcdef"
logs.create_log_stream(logGroupName=log_group, logStreamName=stream)
now = int(time.time() * 1000)
logs.put_log_events(logGroupName=log_group, logStreamName=stream, logEvents=[
    {"timestamp": now - 3000, "message": "INFO booting"},
    {"timestamp": now - 2000, "message": "ERROR database unreachable"},
    {"timestamp": now - 1000, "message": "INFO listening on 8080"},
])

print(json.dumps({
    "repository": repo, "repository_uri": repo_uri, "cluster": cluster,
    "web_service": f"{prefix}-web", "worker_service": f"{prefix}-worker",
    "web_task_definition": web_td, "worker_task_definition": worker_td,
    "live_task_set": live, "listener": listener, "target_groups": tgs,
    "subnets": subnets, "security_groups": sgs, "log_group": log_group,
}))
