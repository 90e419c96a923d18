// Sign-in to the console (README, The console): a Microsoft Entra ID app registration whose app role
// admits a person to the console, its service principal with assignment required (people without a
// role assignment cannot sign in at all), the role given to the deploying user, and App Service
// Authentication on the Function App. Unauthenticated requests are allowed through (AllowAnonymous): the
// API's scripts keep using function keys, and the app itself refuses the console to anyone without the
// role (src/core/console/access.ts). No client secret: sign-in only needs the ID token (OpenID Connect
// implicit flow), so nothing here has to be rotated.
extension 'br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0'

param functionAppName string

@description('Unique name of the app registration (stable across deployments).')
param appRegistrationName string

@description('Value of the app role that may use the console; the app reads it as CONSOLE_ALLOWED_ROLE.')
param consoleRoleValue string = 'Console.Admin'

@description('Object id of a user who gets the console role (the one running azd up); empty: nobody yet.')
param adminPrincipalId string = ''

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

var consoleRoleId = guid(appRegistrationName, consoleRoleValue)

resource consoleApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: appRegistrationName
  displayName: 'ArcGIS org backup console (${functionAppName})'
  signInAudience: 'AzureADMyOrg'
  web: {
    redirectUris: [
      'https://${functionApp.properties.defaultHostName}/.auth/login/aad/callback'
    ]
    implicitGrantSettings: {
      enableIdTokenIssuance: true
    }
  }
  appRoles: [
    {
      id: consoleRoleId
      value: consoleRoleValue
      displayName: 'ArcGIS org backup console administrator'
      description: 'May use the backup console: manage identities, run backups, browse and restore.'
      allowedMemberTypes: [
        'User'
      ]
      isEnabled: true
    }
  ]
}

resource consoleServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: consoleApp.appId
  appRoleAssignmentRequired: true
}

resource adminAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (!empty(adminPrincipalId)) {
  appRoleId: consoleRoleId
  principalId: adminPrincipalId
  resourceId: consoleServicePrincipal.id
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: consoleApp.appId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            consoleApp.appId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: true
      }
    }
  }
}

output clientId string = consoleApp.appId
output roleValue string = consoleRoleValue
output url string = 'https://${functionApp.properties.defaultHostName}/api/console/'
