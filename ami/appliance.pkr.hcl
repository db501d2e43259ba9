# Packer template for the appliance AMI (inf2 / trn1).
#
#   make -C .. ami-bundle          # writes ami/build/appliance.tar.gz from the git tree
#   packer init . && packer build -var region=us-east-1 .
#
# Not built in this repository's CI: building needs AWS credentials and an inf2 instance. See README.md here.
packer {
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "instance_type" {
  type        = string
  default     = "inf2.xlarge"
  description = "Build on the instance family the AMI targets so the Neuron driver (DKMS) builds against its kernel"
}

variable "ami_name_prefix" {
  type    = string
  default = "inferentia-appliance"
}

variable "volume_size_gb" {
  type    = number
  default = 200
}

source "amazon-ebs" "appliance" {
  region        = var.region
  instance_type = var.instance_type
  ami_name      = "${var.ami_name_prefix}-{{timestamp}}"
  ssh_username  = "ubuntu"

  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["099720109477"] # Canonical
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.volume_size_gb
    volume_type           = "gp3"
    throughput            = 125 # gp3's baseline, stated: Debian's packer 1.6.6 (make ami-test) requires it for gp3
    iops                  = 3000
    delete_on_termination = true
  }

  tags = {
    Name        = "${var.ami_name_prefix}"
    NeuronSDK   = "2.28.1"
    Application = "inferentia-appliance"
  }
}

build {
  sources = ["source.amazon-ebs.appliance"]

  provisioner "file" {
    source      = "build/appliance.tar.gz"
    destination = "/tmp/appliance.tar.gz"
  }

  provisioner "file" {
    source      = "."
    destination = "/tmp/ami"
  }

  provisioner "shell" {
    execute_command = "sudo -E bash '{{ .Path }}'"
    scripts = [
      "scripts/10-base.sh",
      "scripts/20-neuron.sh",
      "scripts/30-appliance.sh",
      "scripts/31-neuron-python.sh",
      "scripts/32-appliance-requirements.sh",
      "scripts/40-services.sh",
    ]
  }
}
