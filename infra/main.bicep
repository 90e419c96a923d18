// arcgis-org-backup: everything `azd up` creates in the admin's own subscription.
// One resource group; small modules under app/; managed identity everywhere (no keys, no connection strings
// except the Application Insights one, which only allows ingestion).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it seeds the resource token and names the resource group.')
param environmentName string

@minLength(1)
@description('Region of every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the developer running azd (AZURE_PRINCIPAL_ID). It gets data access to the storage account and the vault for local debugging. Leave empty for none.')
param principalId string = ''

@description('Kind of principal principalId names.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Whether principalId gets the developer role assignments at all.')
param grantDeveloperAccess bool = true

@description('App role (Microsoft Entra ID) that admits a person to the console; the deploying user gets it.')
param consoleRoleValue string = 'Console.Admin'

@minLength(3)
@description('Email address that receives the backup alerts.')
param alertEmailAddress string

@minValue(1)
@maxValue(47)
@description('Hours after which an identity without a successful backup raises an alert (the alert looks back at most two days).')
param expectedBackupIntervalHours int = 26

@description('Table of identities; must match the IDENTITIES_TABLE default of the app.')
param identitiesTableName string = 'identities'

@description('Table of backup and restore runs; must match the RUNS_TABLE default of the app.')
param runsTableName string = 'runs'

@description('Table of the item index (search, history); must match the ITEM_INDEX_TABLE default of the app.')
param itemIndexTableName string = 'itemindex'

@description('Container created for backups in the app storage account.')
param backupContainerName string = 'backups'

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Redundancy of the app storage account (which also holds the default backup container).')
param storageSkuName string = 'Standard_LRS'

@minValue(0)
@maxValue(365)
@description('Days deleted or overwritten blobs and deleted containers stay recoverable; 0 turns soft delete off.')
param blobSoftDeleteRetentionDays int = 7

@minValue(0)
@description('Days after its last modification a backup blob moves from the Hot to the Cool tier (a lifecycle rule on the backup container); 0 keeps backups in Hot. Cool stores for less per GB but charges more per operation and for deletion before 30 days (docs/storage-costs.md).')
param backupCoolAfterDays int = 30

@minValue(0)
@maxValue(146000)
@description('Days each backup blob version stays write-protected (version-level WORM) after it is written; 0 turns immutability off. Turns blob versioning on for the account. The policy is created unlocked: the admin locks it in the portal when satisfied; a locked policy can never be shortened or removed (docs/storage-costs.md).')
param backupImmutabilityDays int = 0

@description('Set to true once the admin has locked the immutability policy: a locked policy refuses every update, so the deployment stops sending it.')
param backupImmutabilityLocked bool = false

@allowed([
  512
  2048
  4096
])
@description('Memory of each Flex Consumption instance.')
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('Upper bound of Flex Consumption instances; keeps the load on ArcGIS and the bill bounded.')
param maximumInstanceCount int = 20

@minValue(30)
@maxValue(730)
@description('Days the Log Analytics workspace keeps data.')
param logRetentionInDays int = 30

@minValue(7)
@maxValue(90)
@description('Days a deleted vault or secret stays recoverable (purge protection is always on).')
param keyVaultSoftDeleteRetentionInDays int = 90

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    backupContainerName: backupContainerName
    tableNames: [
      identitiesTableName
      runsTableName
      itemIndexTableName
    ]
    blobSoftDeleteRetentionDays: blobSoftDeleteRetentionDays
    backupCoolAfterDays: backupCoolAfterDays
    backupImmutabilityDays: backupImmutabilityDays
    backupImmutabilityLocked: backupImmutabilityLocked
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultUri: keyVault.outputs.uri
    identitiesTableName: identitiesTableName
    runsTableName: runsTableName
    itemIndexTableName: itemIndexTableName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    consoleAllowedRole: consoleRoleValue
  }
}

// The console's sign-in: App Service Authentication with an Entra ID app registration and its app role.
module consoleAuth 'app/console-auth.bicep' = {
  name: 'console-auth'
  scope: rg
  params: {
    functionAppName: api.outputs.name
    appRegistrationName: 'arcgis-org-backup-console-${resourceToken}'
    consoleRoleValue: consoleRoleValue
    adminPrincipalId: principalType == 'User' ? principalId : ''
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    appPrincipalId: api.outputs.principalId
    developerPrincipalId: grantDeveloperAccess ? principalId : ''
    developerPrincipalType: principalType
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: abbrs.insightsScheduledQueryRules
    actionGroupName: '${abbrs.insightsActionGroups}${resourceToken}'
    resourceToken: resourceToken
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmailAddress: alertEmailAddress
    expectedBackupIntervalHours: expectedBackupIntervalHours
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    displayName: 'ArcGIS org backup (${environmentName})'
  }
}

// azd turns these into environment variables (azd env get-values).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_FUNCTION_APP_URL string = api.outputs.url
output AZURE_FUNCTION_APP_PRINCIPAL_ID string = api.outputs.principalId
output CONSOLE_URL string = consoleAuth.outputs.url
output CONSOLE_CLIENT_ID string = consoleAuth.outputs.clientId
output CONSOLE_ROLE string = consoleAuth.outputs.roleValue
output SERVICE_API_NAME string = api.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_BACKUP_CONTAINER_NAME string = storage.outputs.backupContainerName
output AZURE_BACKUP_CONTAINER_URL string = storage.outputs.backupContainerUrl
output AZURE_BACKUP_COOL_AFTER_DAYS int = storage.outputs.backupCoolAfterDays
output AZURE_BACKUP_IMMUTABILITY_DAYS int = storage.outputs.backupImmutabilityDays
output AZURE_IDENTITIES_TABLE string = identitiesTableName
output AZURE_RUNS_TABLE string = runsTableName
output AZURE_ITEM_INDEX_TABLE string = itemIndexTableName
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.logAnalyticsWorkspaceName
output AZURE_ACTION_GROUP_ID string = alerts.outputs.actionGroupId
output AZURE_WORKBOOK_ID string = workbook.outputs.id
