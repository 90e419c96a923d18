// The app's own storage account: Functions host and Durable state, the deployment package, the identities,
// runs and item index tables, and a default backup container. Reached only with Microsoft Entra ID (no
// shared keys).
// Backups move to the Cool tier as they age (lifecycle rule); an opt-in version-level WORM policy keeps them
// from being changed or deleted for a number of days. Costs and trade-offs: docs/storage-costs.md.
param name string
param location string = resourceGroup().location
param tags object = {}

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Blob container Flex Consumption deploys the app package to.')
param deploymentContainerName string

@description('Default container for backups.')
param backupContainerName string = 'backups'

@description('Tables the app reads and writes (identities, runs, item index).')
param tableNames array

@minValue(0)
@maxValue(365)
param blobSoftDeleteRetentionDays int = 7

@minValue(0)
@description('Days after its last modification a block blob of the backup container moves from Hot to Cool; 0 adds no such rule.')
param backupCoolAfterDays int = 30

@minValue(0)
@maxValue(146000)
@description('Days each blob version of the backup container stays write-protected (version-level WORM) after it is written; 0 turns immutability off. Turns blob versioning on for the account.')
param backupImmutabilityDays int = 0

@description('Whether an admin has locked the immutability policy (portal: container, Access policy, Lock policy). A locked policy accepts no update, so the deployment then leaves it alone.')
param backupImmutabilityLocked bool = false

var softDelete = blobSoftDeleteRetentionDays > 0
var coolTier = backupCoolAfterDays > 0
var immutable = backupImmutabilityDays > 0

// Lifecycle rules run about once a day. Filters name blobs by '<container>/<blob prefix>'.
var coolRules = coolTier ? [
  {
    name: 'backupsToCool'
    enabled: true
    type: 'Lifecycle'
    definition: {
      filters: {
        blobTypes: [
          'blockBlob'
        ]
        prefixMatch: [
          '${backupContainerName}/'
        ]
      }
      actions: {
        baseBlob: {
          tierToCool: {
            daysAfterModificationGreaterThan: backupCoolAfterDays
          }
        }
      }
    }
  }
] : []
// With versioning on, deleting or overwriting a blob keeps its old content as a previous version, billed until
// it is deleted too. This rule deletes previous versions once the immutability period of their content is over
// (a version dates from the write that created it), in every container of the account: the Functions host,
// Durable Functions and the deployment package overwrite and delete blobs as well.
var versionRules = immutable ? [
  {
    name: 'expirePreviousVersions'
    enabled: true
    type: 'Lifecycle'
    definition: {
      filters: {
        blobTypes: [
          'blockBlob'
        ]
      }
      actions: {
        version: {
          delete: {
            daysAfterCreationGreaterThan: backupImmutabilityDays
          }
        }
      }
    }
  }
] : []
var lifecycleRules = concat(coolRules, versionRules)

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storageAccount
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: softDelete
      days: softDelete ? blobSoftDeleteRetentionDays : null
    }
    containerDeleteRetentionPolicy: {
      enabled: softDelete
      days: softDelete ? blobSoftDeleteRetentionDays : null
    }
    // Version-level immutability needs versioning. Never switched off from here (null leaves the setting as
    // it is): a container that once had version-level immutability keeps it, and it needs versioning.
    isVersioningEnabled: immutable ? true : null
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource backupContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: backupContainerName
  properties: {
    publicAccess: 'None'
    // Settable only when the container is created; an existing container must be migrated (docs/storage-costs.md).
    immutableStorageWithVersioning: immutable ? {
      enabled: true
    } : null
  }
}

// The container's default time-based retention policy, inherited by every blob version written to it. ARM
// creates it unlocked (it can still be shortened or deleted); the admin locks it in the portal when satisfied,
// after which it can only be extended.
resource backupImmutabilityPolicy 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (immutable && !backupImmutabilityLocked) {
  parent: backupContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: backupImmutabilityDays
    allowProtectedAppendWrites: false
  }
}

resource lifecyclePolicy 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (!empty(lifecycleRules)) {
  parent: storageAccount
  name: 'default'
  properties: {
    policy: {
      rules: lifecycleRules
    }
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storageAccount
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

output name string = storageAccount.name
output id string = storageAccount.id
output blobEndpoint string = storageAccount.properties.primaryEndpoints.blob
output queueEndpoint string = storageAccount.properties.primaryEndpoints.queue
output tableEndpoint string = storageAccount.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output backupContainerName string = backupContainer.name
output backupContainerUrl string = '${storageAccount.properties.primaryEndpoints.blob}${backupContainer.name}'
output backupCoolAfterDays int = backupCoolAfterDays
output backupImmutabilityDays int = backupImmutabilityDays
